import Foundation
import Synchronization

/// Where a request came from, as throttles count it: an IPv4 address, or the /64 of an IPv6 address (one
/// host usually owns a whole /64). An IPv4-mapped IPv6 address counts as its IPv4 address.
public struct SourceKey: Hashable, Sendable, CustomStringConvertible {
    let high: UInt64
    let low: UInt32
    let isIPv6: Bool

    /// `bytes`: 4 (IPv4) or 16 (IPv6) address bytes; nil for any other length.
    public init?(addressBytes bytes: [UInt8]) {
        var b = bytes
        // An IPv4-mapped IPv6 address is its IPv4 address.
        if b.count == 16, b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xFF, b[11] == 0xFF { b = Array(b[12..<16]) }
        switch b.count {
        case 4:
            high = 0
            low = b.reduce(0) { $0 << 8 | UInt32($1) }
            isIPv6 = false
        case 16:
            high = b[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            low = 0
            isIPv6 = true
        default:
            return nil
        }
    }

    public var description: String {
        if !isIPv6 { return "\(low >> 24).\(low >> 16 & 0xFF).\(low >> 8 & 0xFF).\(low & 0xFF)" }
        let groups = (0..<4).map { String((high >> (48 - 16 * UInt64($0))) & 0xFFFF, radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}

/// Failed authentications per source address, shared by the signaling login and TURN (401 with wrong
/// credentials, 441): the first `freeFailures` within `window` cost nothing, each further one is
/// answered after a growing delay (`baseDelay` doubling up to `maxDelay`), and at `blockAfter` failures the
/// source is refused outright for `blockDuration`. Successes do not reset the count (an attacker with one
/// valid account must not be able to wipe it). Other sources are unaffected.
public final class AuthThrottle: Sendable {
    public struct Settings: Sendable, Equatable {
        /// 0 turns the throttle off.
        public var freeFailures: Int = 5
        public var window: TimeInterval = 300
        public var baseDelay: TimeInterval = 0.25
        public var maxDelay: TimeInterval = 4
        /// 0 never blocks.
        public var blockAfter: Int = 20
        public var blockDuration: TimeInterval = 600
        /// Sources remembered at most (the oldest are forgotten first beyond it).
        public var maxSources: Int = 100_000

        public init() {}
        public static let off: Settings = { var s = Settings(); s.freeFailures = 0; s.blockAfter = 0; return s }()
        public var enabled: Bool { freeFailures > 0 || blockAfter > 0 }
    }

    public enum Verdict: Equatable, Sendable {
        case allowed
        /// Refused without checking the password, for `retryAfter` more seconds.
        case blocked(retryAfter: TimeInterval)
    }

    private struct Entry {
        var failures: Int
        var last: TimeInterval
        var blockedUntil: TimeInterval
    }

    private struct State {
        var settings: Settings
        var entries: [SourceKey: Entry] = [:]
    }

    private let state: Mutex<State>
    private let clock: @Sendable () -> TimeInterval
    private let blockedCount = Atomic<Int>(0)
    private let delayedCount = Atomic<Int>(0)

    public init(_ settings: Settings = Settings(), clock: @escaping @Sendable () -> TimeInterval = { Date().timeIntervalSince1970 }) {
        state = Mutex(State(settings: settings))
        self.clock = clock
    }

    public func update(_ settings: Settings) { state.withLock { $0.settings = settings } }
    public var settings: Settings { state.withLock { $0.settings } }

    /// Requests refused because their source was blocked, and failures answered late.
    public var blocked: Int { blockedCount.load(ordering: .relaxed) }
    public var delayed: Int { delayedCount.load(ordering: .relaxed) }

    /// Asked before checking a password.
    public func check(_ source: SourceKey) -> Verdict {
        let now = clock()
        let verdict = state.withLock { s -> Verdict in
            guard let e = s.entries[source], e.blockedUntil > now else { return .allowed }
            return .blocked(retryAfter: e.blockedUntil - now)
        }
        if verdict != .allowed { blockedCount.add(1, ordering: .relaxed) }
        return verdict
    }

    /// Records a failed authentication; returns how long to wait before answering it (0 = at once).
    @discardableResult
    public func recordFailure(_ source: SourceKey) -> TimeInterval {
        let now = clock()
        let delay = state.withLock { s -> TimeInterval in
            let c = s.settings
            guard c.enabled else { return 0 }
            var e = s.entries[source] ?? Entry(failures: 0, last: now, blockedUntil: 0)
            if now - e.last > c.window { e.failures = 0 }
            e.failures += 1
            e.last = now
            if c.blockAfter > 0, e.failures >= c.blockAfter { e.blockedUntil = now + c.blockDuration }
            if s.entries[source] == nil, s.entries.count >= c.maxSources { Self.prune(&s, now: now) }
            s.entries[source] = e
            guard c.freeFailures > 0, e.failures > c.freeFailures else { return 0 }
            let doublings = min(e.failures - c.freeFailures - 1, 30)
            return min(c.baseDelay * Double(1 << doublings), c.maxDelay)
        }
        if delay > 0 { delayedCount.add(1, ordering: .relaxed) }
        return delay
    }

    /// Forgets sources whose failures are older than the window and not blocked (called once a second or so).
    public func sweep() {
        let now = clock()
        state.withLock { Self.prune(&$0, now: now) }
    }

    public var trackedSources: Int { state.withLock { $0.entries.count } }

    private static func prune(_ s: inout State, now: TimeInterval) {
        let window = s.settings.window
        s.entries = s.entries.filter { $0.value.blockedUntil > now || now - $0.value.last <= window }
        // Still full (a spread-out attack): forget the oldest half rather than grow without bound.
        if s.entries.count >= s.settings.maxSources {
            let keep = s.entries.sorted { $0.value.last > $1.value.last }.prefix(s.settings.maxSources / 2)
            s.entries = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
    }
}
