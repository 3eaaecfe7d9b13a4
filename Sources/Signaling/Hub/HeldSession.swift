import NIOCore
import Synchronization

/// A session whose socket went away without the peer leaving (`signaling.resume_window`): the others are
/// not told `left`, and what is sent to it waits here, in order and bounded, until a resume takes it or
/// the window ends.
final class HeldSession: Sendable {
    private struct State {
        var queue: [ByteBuffer] = []
        var bytes = 0
        var overflowed = false
        /// Set by the resume: what still arrives goes straight to the new connection (or, when the session
        /// moved to another instance, after it).
        var successor: (@Sendable (ByteBuffer) -> Bool)?
    }

    let deadline: ContinuousClock.Instant
    private let maxMessages: Int
    private let maxBytes: Int
    private let onOverflow: @Sendable () -> Void
    private let state = Mutex(State())

    init(deadline: ContinuousClock.Instant, maxMessages: Int, maxBytes: Int, onOverflow: @escaping @Sendable () -> Void) {
        self.deadline = deadline
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.onOverflow = onOverflow
    }

    /// Queues `text` for the resume; false when the queue is full (the session then ends as a leave,
    /// `onOverflow`) or already overflowed.
    func enqueue(_ text: ByteBuffer) -> Bool {
        enum Outcome { case queued, overflow, dropped, forward(@Sendable (ByteBuffer) -> Bool) }
        let outcome = state.withLock { s -> Outcome in
            if let successor = s.successor { return .forward(successor) }
            guard !s.overflowed else { return .dropped }
            guard s.queue.count < maxMessages, s.bytes + text.readableBytes <= maxBytes else {
                s.overflowed = true
                s.queue = []
                return .overflow
            }
            s.queue.append(text)
            s.bytes += text.readableBytes
            return .queued
        }
        switch outcome {
        case .queued: return true
        case .dropped: return false
        case .overflow:
            onOverflow()
            return false
        case .forward(let successor):
            return successor(text)
        }
    }

    /// The resume (under the hub's lock): the queued messages, in order; from now on anything that was
    /// on its way here goes to `connection`, after them.
    func resume(into connection: PeerConnection) -> [ByteBuffer] {
        resume { connection.send($0) }
    }

    /// The same, with what arrives later handed to `successor` (a session moving to another instance).
    func resume(successor: @escaping @Sendable (ByteBuffer) -> Bool) -> [ByteBuffer] {
        state.withLock { s in
            s.successor = successor
            defer { s.queue = [] }
            return s.queue
        }
    }

    var queuedCount: Int { state.withLock { $0.queue.count } }
    var queuedBytes: Int { state.withLock { $0.bytes } }
}
