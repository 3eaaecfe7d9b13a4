import Auth
import NIOCore
import Synchronization

/// The TURN settings an operator may change while the server runs (SIGHUP): quotas, the bandwidth cap,
/// the unauthenticated request rate and the peer address policy. Engines re-read them once a second,
/// so the relay path never takes a lock for them.
public struct TurnLimits: Sendable {
    /// Allocations in total (508 beyond) and per username (486 beyond); 0 = unlimited.
    public var maxAllocations: Int = 10000
    public var maxAllocationsPerUser: Int = 0
    /// Permissions per allocation (508 beyond).
    public var maxPermissionsPerAllocation: Int = 64
    /// Channel bindings per allocation (508 beyond). Each costs memory for as long as it lives (600 s,
    /// then 300 s of cooldown), so without a cap one allocation could bind all 16 384 channel numbers.
    public var maxChannelsPerAllocation: Int = 128
    /// Open TCP and TLS connections to the TURN listeners per source address (IPv6 by /64); a connection
    /// beyond it is closed at once and counted. 0 = no limit.
    public var maxStreamConnectionsPerSource: Int = 256
    /// Bytes per second one allocation may relay, both directions together; excess is dropped and
    /// counted. 0 = no cap. RFC 6062 TCP byte pipes are not capped (dropping would corrupt the stream).
    public var bandwidthLimit: Int = 0
    /// Requests without MESSAGE-INTEGRITY (Binding, the first Allocate) per second per source address
    /// (IPv6 by /64), with bursts up to `unauthenticatedBurst`; excess is dropped and counted. 0 = no limit.
    public var unauthenticatedRate: Int = 100
    public var unauthenticatedBurst: Int = 200
    public var peerPolicy = PeerAddressPolicy()

    public init() {}
}

/// The live limits, shared by the engines, with a generation that moves on every change (so an engine
/// can tell a reload from its own copy going stale).
public final class TurnLimitsBox: Sendable {
    private let value: Mutex<(limits: TurnLimits, generation: Int)>
    init(_ limits: TurnLimits) { value = Mutex((limits, 0)) }
    public var current: TurnLimits { value.withLock { $0.limits } }
    var versioned: (limits: TurnLimits, generation: Int) { value.withLock { $0 } }
    func set(_ limits: TurnLimits) { value.withLock { $0 = (limits, $0.generation + 1) } }
}

/// A token bucket per source address, shared by the engines (only requests without integrity touch
/// it). Bounded: idle buckets are forgotten by `sweep`, and past `maxSources` new sources are let through
/// uncounted until the next sweep rather than growing the table.
final class SourceRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var last: NIODeadline
    }

    private let buckets = Mutex<[SourceKey: Bucket]>([:])
    let maxSources: Int

    init(maxSources: Int = 100_000) { self.maxSources = maxSources }

    func allow(_ source: SourceKey, rate: Int, burst: Int, now: NIODeadline = .now()) -> Bool {
        guard rate > 0 else { return true }
        let capacity = Double(max(burst, 1))
        return buckets.withLock { table in
            var b = table[source] ?? Bucket(tokens: capacity, last: now)
            let elapsed = Double((now - b.last).nanoseconds) / 1e9
            b.tokens = min(capacity, b.tokens + elapsed * Double(rate))
            b.last = now
            let allowed = b.tokens >= 1
            if allowed { b.tokens -= 1 }
            if table[source] != nil || table.count < maxSources { table[source] = b }
            return allowed
        }
    }

    /// Forgets buckets that have refilled (idle sources).
    func sweep(rate: Int, burst: Int, now: NIODeadline = .now()) {
        guard rate > 0 else {
            buckets.withLock { $0.removeAll() }
            return
        }
        let refill = TimeAmount.nanoseconds(Int64(Double(max(burst, 1)) / Double(rate) * 1e9))
        buckets.withLock { $0 = $0.filter { now - $0.value.last < refill } }
    }

    var count: Int { buckets.withLock { $0.count } }
}

/// An allocation's bandwidth cap: a token bucket of bytes, one second deep.
struct BandwidthBucket {
    private var tokens: Int = 0
    private var last: NIODeadline = .uptimeNanoseconds(0)

    /// True when `bytes` fit under `limit` bytes/s (and takes them).
    @inline(__always)
    mutating func take(_ bytes: Int, limit: Int, now: NIODeadline) -> Bool {
        let elapsed = now - last
        if elapsed >= .seconds(1) {
            tokens = limit
        } else if elapsed > .zero {
            tokens = min(limit, tokens + Int(Int64(limit) * elapsed.nanoseconds / 1_000_000_000))
        }
        last = now
        guard tokens >= bytes else { return false }
        tokens -= bytes
        return true
    }
}

extension IPAddress {
    /// The throttles' key for this address (IPv6 by /64).
    var sourceKey: SourceKey { SourceKey(addressBytes: bytes)! }
}
