import Foundation
import Synchronization

/// The hub's handle on one WebSocket: a bounded outbound queue drained by the connection's own writer,
/// so whoever sends to this peer never waits for it. A peer whose queue is full is a slow consumer and
/// is disconnected instead of growing memory.
public final class PeerConnection: Sendable {
    enum Outbound: Sendable {
        case text(String)
    }

    /// Why and how the connection is being closed (the last event sent before the close frame).
    struct CloseRequest: Sendable {
        let finalEvent: String?
        let reason: String
        let at: ContinuousClock.Instant
    }

    let id: UInt64
    let remote: String
    let opened: ContinuousClock.Instant
    private let outbox: AsyncStream<Outbound>.Continuation
    let outboundStream: AsyncStream<Outbound>
    private let closeRequest = Mutex<CloseRequest?>(nil)
    /// Milliseconds since `opened` of the last message received (idle timeout).
    private let lastActivity = Atomic<Int64>(0)
    private let authenticatedFlag = Atomic<Bool>(false)

    /// Cuts the TCP connection without ceremony (a peer that ignores our close frame).
    let forceClose: @Sendable () -> Void

    init(id: UInt64, remote: String, queueLimit: Int, forceClose: @escaping @Sendable () -> Void) {
        self.id = id
        self.remote = remote
        self.forceClose = forceClose
        self.opened = .now
        (outboundStream, outbox) = AsyncStream.makeStream(of: Outbound.self, bufferingPolicy: .bufferingOldest(queueLimit))
    }

    /// Queues `text`; false if the connection is closing or could not keep up (then it is closed).
    @discardableResult
    func send(_ text: String) -> Bool {
        switch outbox.yield(.text(text)) {
        case .enqueued: return true
        case .dropped:
            close(finalEvent: ServerEvents.error(.slowConsumer, "outbound queue full"), reason: "slow consumer")
            return false
        case .terminated: return false
        @unknown default: return false
        }
    }

    /// Ends the connection: queued messages are still written, then `finalEvent`, then the close frame.
    func close(finalEvent: String?, reason: String) {
        let first = closeRequest.withLock { r -> Bool in
            guard r == nil else { return false }
            r = CloseRequest(finalEvent: finalEvent, reason: reason, at: .now)
            return true
        }
        if first { outbox.finish() }
    }

    var pendingClose: CloseRequest? { closeRequest.withLock { $0 } }

    var isAuthenticated: Bool { authenticatedFlag.load(ordering: .relaxed) }
    func markAuthenticated() { authenticatedFlag.store(true, ordering: .relaxed) }

    func touch() {
        lastActivity.store(Int64((ContinuousClock.now - opened) / .milliseconds(1)), ordering: .relaxed)
    }

    /// Time since the last message received (or since opening).
    func idle(now: ContinuousClock.Instant) -> Duration {
        now - opened - .milliseconds(lastActivity.load(ordering: .relaxed))
    }
}
