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

/// Counters keyed by a small fixed set of labels (an enum), for metrics with one label.
public final class LabeledCounters<Label: CaseIterable & RawRepresentable & Sendable>: Sendable
    where Label.RawValue == String, Label.AllCases: Sendable {
    private let counters: [String: StatCounter]
    public init() { counters = Dictionary(uniqueKeysWithValues: Label.allCases.map { ($0.rawValue, StatCounter()) }) }
    @inline(__always) public func add(_ label: Label, _ n: Int = 1) { counters[label.rawValue]!.add(n) }
    public func value(_ label: Label) -> Int { counters[label.rawValue]!.value }
    public var values: [(label: String, value: Int)] { Label.allCases.map { ($0.rawValue, value($0)) } }
}
