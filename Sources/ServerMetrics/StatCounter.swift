import Synchronization

/// One counter any thread may read; written from the event loops (relaxed atomic adds). Both halves
/// count with it, and /metrics reads it.
public final class StatCounter: Sendable {
    @usableFromInline let atomic = Atomic<Int>(0)
    public init() {}
    @inlinable @inline(__always) public func add(_ n: Int = 1) { atomic.add(n, ordering: .relaxed) }
    @inlinable @inline(__always) public func subtract(_ n: Int = 1) { atomic.subtract(n, ordering: .relaxed) }
    public var value: Int { atomic.load(ordering: .relaxed) }
}

/// Counters keyed by a small fixed set of labels (an enum), for metrics with one label. Indexed by the
/// case's position (a few enum comparisons), not by hashing its name, since it is counted per message.
/// `add` is inlinable so that it is specialised for the caller's enum: unspecialised, the generic
/// `firstIndex(of:)` looked up type metadata on every call (5 % of the signaling server's CPU).
public final class LabeledCounters<Label: CaseIterable & RawRepresentable & Equatable & Sendable>: Sendable
    where Label.RawValue == String, Label.AllCases: Sendable {
    @usableFromInline let labels: [Label]
    @usableFromInline let counters: [StatCounter]
    public init() {
        labels = Array(Label.allCases)
        counters = labels.map { _ in StatCounter() }
    }
    @inlinable @inline(__always)
    public func add(_ label: Label, _ n: Int = 1) { counters[labels.firstIndex(of: label)!].add(n) }
    public func value(_ label: Label) -> Int { counters[labels.firstIndex(of: label)!].value }
    public var values: [(label: String, value: Int)] { zip(labels, counters).map { ($0.rawValue, $1.value) } }
}
