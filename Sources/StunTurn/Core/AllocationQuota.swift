import Synchronization

/// Allocation quotas (RFC 8656 §7.2 steps 8-9): per user → 486 Allocation Quota Reached, in total → 508
/// Insufficient Capacity. 0 means unlimited. Shared across event loops; touched only on allocation
/// creation and deletion.
public final class AllocationQuota: Sendable {
    public struct Limits: Sendable, Equatable {
        public var perUser: Int
        public var total: Int
        public init(perUser: Int, total: Int) {
            self.perUser = perUser
            self.total = total
        }
    }

    private struct State {
        var limits: Limits
        var byUser: [String: Int] = [:]
        var total = 0
    }

    private let state: Mutex<State>

    public init(_ limits: Limits) { state = Mutex(State(limits: limits)) }

    public func update(_ limits: Limits) { state.withLock { $0.limits = limits } }

    public var total: Int { state.withLock { $0.total } }

    public func acquire(user: String) -> StunError? {
        state.withLock { s in
            if s.limits.total > 0, s.total >= s.limits.total { return .insufficientCapacity }
            let n = s.byUser[user, default: 0]
            if s.limits.perUser > 0, n >= s.limits.perUser { return .allocationQuotaReached }
            s.byUser[user] = n + 1
            s.total += 1
            return nil
        }
    }

    public func release(user: String) {
        state.withLock { s in
            guard let n = s.byUser[user] else { return }
            if n <= 1 { s.byUser.removeValue(forKey: user) } else { s.byUser[user] = n - 1 }
            s.total -= 1
        }
    }
}
