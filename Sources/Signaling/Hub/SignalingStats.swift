import Auth
import ServerMetrics

/// Counters of the signaling half (read by tests, the benchmark, /metrics, /api/stats and the dashboard),
/// each declared once in `metrics`.
public final class SignalingStats: Sendable {
    /// What a client sent, by kind (the protocol's own events; app events count as directed or broadcast).
    public enum Inbound: String, CaseIterable, Sendable {
        case authenticate, ping, directed, broadcast, invalid
    }

    /// What the server sent, by kind: forwarded app messages, server API messages, and its own events.
    public enum Outbound: String, CaseIterable, Sendable {
        case forwarded, api, authenticated, unauthorized, joined, left, pong, error, shutdown, resumed, presence
    }

    public let messagesIn = StatCounter()
    public let messagesOut = StatCounter()
    public let inbound = LabeledCounters<Inbound>()
    public let outbound = LabeledCounters<Outbound>()
    public let authFailures = StatCounter()
    public let authBlocked = StatCounter()
    public let authTimeouts = StatCounter()
    public let httpTimeouts = StatCounter()
    public let badHTTPRequests = StatCounter()
    public let lateUpgradesClosed = StatCounter()
    public let rejectedConnections = StatCounter()
    public let badMessages = StatCounter()
    public let slowConsumers = StatCounter()
    public let hookFailures = StatCounter()
    public let hookEventsDropped = StatCounter()
    public let webhookDeliveries = StatCounter()
    public let heldSessions = StatCounter()
    public let resumes = StatCounter()
    public let failedResumes = StatCounter()
    public let replayedMessages = StatCounter()
    public let heldExpired = StatCounter()
    public let tokensAccepted = StatCounter()
    public let tokensRefused = LabeledCounters<TokenRefusal>()

    public init() {}

    /// Every signaling counter, once: its Prometheus name, its `/api/stats` key and what it counts.
    public var metrics: [Metric] {
        [
            .labeled("webrtc_signaling_messages_in_total", label: "kind", json: "messages_in",
                     help: "messages received, by kind (`authenticate`, `ping`, `directed`, `broadcast`, `invalid`)", inbound),
            .labeled("webrtc_signaling_messages_out_total", label: "kind", json: "messages_out",
                     help: "messages sent, by kind (`forwarded`, `api`, and the server's own events)", outbound),
            Metric("webrtc_auth_failures_total", .counter, labels: ["half"], json: "auth_failures", jsonByLabel: false,
                   help: "failed logins (signaling `authenticate` and `resume`; TURN: 401 with wrong credentials and 441)") {
                [.init([("half", "signaling")], self.authFailures.value)]
            },
            Metric("webrtc_auth_blocked_total", .counter, labels: ["half"], json: "auth_blocked", jsonByLabel: false,
                   help: "logins refused without a check because their source is blocked (auth throttle)") {
                [.init([("half", "signaling")], self.authBlocked.value)]
            },
            .counter("webrtc_signaling_auth_timeouts_total", json: "auth_timeouts", help: "sockets closed for not authenticating within `signaling.auth_timeout`", authTimeouts),
            .counter("webrtc_signaling_http_timeouts_total", json: "http_timeouts",
                     help: "HTTP connections closed by `signaling.http_timeout`: no request head in time, or a body not in full", httpTimeouts),
            .counter("webrtc_signaling_bad_http_requests_total", json: "bad_http_requests",
                     help: "HTTP requests answered 400/426/431 and closed (malformed, or a WebSocket handshake that breaks RFC 6455)", badHTTPRequests),
            .counter("webrtc_signaling_late_upgrades_closed_total", json: "late_upgrades_closed",
                     help: "kept-alive connections closed because a later request on them was a WebSocket upgrade (the proxy retries)", lateUpgradesClosed),
            .counter("webrtc_signaling_rejected_connections_total", json: "rejected_connections",
                     help: "WebSocket connections refused at `signaling.max_connections`", rejectedConnections),
            .counter("webrtc_signaling_bad_messages_total", json: "bad_messages", help: "bad messages answered with an error", badMessages),
            .counter("webrtc_signaling_slow_consumers_total", json: "slow_consumers",
                     help: "peers disconnected for not reading (`signaling.outbound_buffer`)", slowConsumers),
            .counter("webrtc_signaling_hook_failures_total", json: "hook_failures", help: "hook and webhook calls that failed or timed out", hookFailures),
            .counter("webrtc_signaling_webhook_deliveries_total", help: "webhook POSTs answered 2xx", webhookDeliveries),
            .gauge("webrtc_signaling_held_sessions", json: "held_sessions", help: "sessions held for a resume now", heldSessions),
            .counter("webrtc_signaling_resumes_total", json: "resumes", help: "sessions resumed", resumes),
            .counter("webrtc_signaling_failed_resumes_total", json: "failed_resumes", help: "`resume` answered `resume_failed`", failedResumes),
            .counter("webrtc_signaling_replayed_messages_total", json: "replayed_messages", help: "messages replayed by resumes", replayedMessages),
            .counter("webrtc_signaling_tokens_accepted_total", json: "tokens_accepted", help: "logins with a signed join token accepted",
                     tokensAccepted),
            .labeled("webrtc_signaling_tokens_refused_total", label: "reason", json: "tokens_refused",
                     help: "join tokens refused, by reason (`signature`, `expired`, `wrong_room`, … as in `unauthorized`)", tokensRefused),
            .counter("webrtc_signaling_held_sessions_expired_total", json: "held_sessions_expired",
                     help: "held sessions that ended without a resume (window over, queue full, kicked, replaced)", heldExpired),
        ]
    }

    @inline(__always)
    func received(_ kind: Inbound) { inbound.add(kind) }

    @inline(__always)
    func sent(_ kind: Outbound, _ n: Int = 1) {
        messagesOut.add(n)
        outbound.add(kind, n)
    }
}
