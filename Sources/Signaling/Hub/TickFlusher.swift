import NIOCore
import Synchronization

/// Flushes, once at the end of an event-loop tick, every connection on that loop that was written to
/// during the tick. One task per tick and loop, instead of one per connection written to: a message
/// forwarded to a peer then costs the peer's write and its share of one flush, and no task of its own.
/// Its state belongs to `loop` (a loop-bound box, checked on access).
final class TickFlusher: Sendable {
    let loop: any EventLoop
    private struct Pending {
        var connections: [PeerConnection] = []
        var scheduled = false
    }
    private let state: NIOLoopBoundBox<Pending>

    init(loop: any EventLoop) {
        self.loop = loop
        state = .makeBoxSendingValue(Pending(), eventLoop: loop)
    }

    /// On the loop: `connection` is flushed at the end of this tick.
    func add(_ connection: PeerConnection) {
        state.value.connections.append(connection)
        guard !state.value.scheduled else { return }
        state.value.scheduled = true
        loop.execute { self.drain() }
    }

    private func drain() {
        state.value.scheduled = false
        // By index: a flush may write to another connection on this loop (a slow consumer's close),
        // which then joins this same drain.
        var i = 0
        while i < state.value.connections.count {
            let connection = state.value.connections[i]
            connection.flushNow()
            i += 1
        }
        let keep = state.value.connections.count <= 4096
        state.value.connections.removeAll(keepingCapacity: keep)
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
