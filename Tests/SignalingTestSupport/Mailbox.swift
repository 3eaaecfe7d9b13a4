import Synchronization

/// What a callback delivers, kept in order for a test to take one at a time, each with a deadline.
public final class Mailbox<T: Sendable>: Sendable {
    private struct State {
        var items: [T] = []
        var waiter: (id: Int, continuation: CheckedContinuation<T?, Never>)?
        var nextID = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func put(_ item: T) {
        let waiter = state.withLock { s -> CheckedContinuation<T?, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w.continuation
            }
            s.items.append(item)
            return nil
        }
        waiter?.resume(returning: item)
    }

    /// The next item, or nil when none comes within `timeout`.
    public func take(timeout: Duration = .seconds(10)) async -> T? {
        await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
            let id = state.withLock { s -> Int? in
                if !s.items.isEmpty {
                    c.resume(returning: s.items.removeFirst())
                    return nil
                }
                s.nextID += 1
                s.waiter = (s.nextID, c)
                return s.nextID
            }
            guard let id else { return }
            Task {
                try? await Task.sleep(for: timeout)
                let expired = self.state.withLock { s -> CheckedContinuation<T?, Never>? in
                    guard let w = s.waiter, w.id == id else { return nil }
                    s.waiter = nil
                    return w.continuation
                }
                expired?.resume(returning: nil)
            }
        }
    }

    /// Everything that arrives until `quiet` passes without a new item.
    public func drain(quiet: Duration) async -> [T] {
        var out: [T] = []
        while let x = await take(timeout: quiet) { out.append(x) }
        return out
    }
}
