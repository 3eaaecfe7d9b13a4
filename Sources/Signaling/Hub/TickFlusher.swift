import NIOCore
import Synchronization

/// Flushes, once at the end of an event-loop tick, every connection on that loop that was written to
/// during the tick. One task per tick and loop, instead of one per connection written to: a message
/// forwarded to a peer then costs the peer's write and its share of one flush, and no task of its own.
///
/// `@unchecked Sendable`: `pending` and `scheduled` are touched on `loop` only.
final class TickFlusher: @unchecked Sendable {
    let loop: any EventLoop
    private var pending: [PeerConnection] = []
    private var scheduled = false

    init(loop: any EventLoop) { self.loop = loop }

    /// On the loop: `connection` is flushed at the end of this tick.
    func add(_ connection: PeerConnection) {
        pending.append(connection)
        guard !scheduled else { return }
        scheduled = true
        loop.execute { self.drain() }
    }

    private func drain() {
        scheduled = false
        // By index: a flush may write to another connection on this loop (a slow consumer's close),
        // which then joins this same drain.
        var i = 0
        while i < pending.count {
            pending[i].flushNow()
            i += 1
        }
        pending.removeAll(keepingCapacity: pending.count <= 4096)
    }
}

/// One `TickFlusher` per event loop, created on first use.
final class TickFlushers: Sendable {
    private let byLoop = Mutex<[ObjectIdentifier: TickFlusher]>([:])

    func flusher(for loop: any EventLoop) -> TickFlusher {
        byLoop.withLock { all in
            let key = ObjectIdentifier(loop)
            if let f = all[key] { return f }
            let f = TickFlusher(loop: loop)
            all[key] = f
            return f
        }
    }
}
