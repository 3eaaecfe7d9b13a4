import Auth
import Synchronization

/// Counters of the signaling half (read by tests, the benchmark, /metrics, /api/stats and the dashboard).
public final class SignalingStats: Sendable {
    /// What a client sent, by kind (the protocol's own events; app events count as directed or broadcast).
    public enum Inbound: String, CaseIterable, Sendable {
        case authenticate, ping, directed, broadcast, invalid
    }

    /// What the server sent, by kind: forwarded app messages, server API messages, and its own events.
    public enum Outbound: String, CaseIterable, Sendable {
        case forwarded, api, authenticated, unauthorized, joined, left, pong, error, shutdown, resumed, presence
    }

    public let messagesIn = Atomic<Int>(0)
    public let messagesOut = Atomic<Int>(0)
    public let inbound = LabeledCounters<Inbound>()
    public let outbound = LabeledCounters<Outbound>()
    public let authFailures = Atomic<Int>(0)
    /// Logins refused without a password check because their source is blocked (auth throttle).
    public let authBlocked = Atomic<Int>(0)
    public let authTimeouts = Atomic<Int>(0)
    /// HTTP connections closed by signaling.http_timeout: no complete request head in time after the
    /// accept, or a request body that did not arrive in full within it of its head.
    public let httpTimeouts = Atomic<Int>(0)
    /// HTTP requests the parser refused (answered 400 or 431) and WebSocket upgrades that broke RFC 6455
    /// (answered 400 or 426); each closes its connection.
    public let badHTTPRequests = Atomic<Int>(0)
    /// Kept-alive connections closed because a later request on them was a WebSocket upgrade (see
    /// LateUpgradeHandler): the proxy that sent it retries on a new connection.
    public let lateUpgradesClosed = Atomic<Int>(0)
    public let rejectedConnections = Atomic<Int>(0)
    /// Bad input answered with an `error` or `invalid_message` event.
    public let badMessages = Atomic<Int>(0)
    public let slowConsumers = Atomic<Int>(0)
    public let hookFailures = Atomic<Int>(0)
    public let hookEventsDropped = Atomic<Int>(0)
    public let webhookDeliveries = Atomic<Int>(0)
    /// Sessions held for a resume right now; resumes done and refused; messages replayed by resumes;
    /// held sessions that ended without a resume (window over, queue overflow, kicked, replaced).
    public let heldSessions = Atomic<Int>(0)
    public let resumes = Atomic<Int>(0)
    public let failedResumes = Atomic<Int>(0)
    public let replayedMessages = Atomic<Int>(0)
    public let heldExpired = Atomic<Int>(0)

    public init() {}

    @inline(__always)
    func received(_ kind: Inbound) { inbound.add(kind) }

    @inline(__always)
    func sent(_ kind: Outbound, _ n: Int = 1) {
        messagesOut.add(n, ordering: .relaxed)
        outbound.add(kind, n)
    }
}
