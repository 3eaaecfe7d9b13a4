import Auth
import Cluster
import Foundation
import CoreMetrics
import Prometheus
import Signaling
import StunTurn
import Synchronization

/// /metrics: the counters both halves keep (lock-free atomics on their hot paths) published through
/// swift-metrics into a swift-prometheus registry at scrape time. Counters are advanced by what changed
/// since the last scrape, gauges set to the current value.
final class PrometheusExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let turn: TurnServer
    private let hub: SignalingHub
    private let credentials: CredentialStore
    private struct Published {
        var counters: [String: (counter: CoreMetrics.Counter, last: Int)] = [:]
        var gauges: [String: CoreMetrics.Gauge] = [:]
    }
    private let published = Mutex(Published())

    private let cluster: ClusterNode?

    init(turn: TurnServer, hub: SignalingHub, credentials: CredentialStore, cluster: ClusterNode? = nil) {
        self.turn = turn
        self.cluster = cluster
        self.hub = hub
        self.credentials = credentials
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// One scrape: the current values, in the Prometheus text format.
    func scrape() async -> String {
        let allocations = await turn.allocations()
        published.withLock { p in update(&p, allocations: allocations) }
        return registry.emitToString() + processMetrics()
    }

    private func update(_ p: inout Published, allocations: [AllocationInfo]) {
        func counter(_ name: String, _ value: Int, _ dims: [(String, String)] = []) {
            let key = name + dims.map { "|\($0.0)=\($0.1)" }.joined()
            let entry = p.counters[key] ?? (CoreMetrics.Counter(label: name, dimensions: dims, factory: factory), 0)
            if value > entry.last { entry.counter.increment(by: value - entry.last) }
            p.counters[key] = (entry.counter, max(value, entry.last))
        }
        func gauge(_ name: String, _ value: Int, _ dims: [(String, String)] = []) {
            let key = name + dims.map { "|\($0.0)=\($0.1)" }.joined()
            let g = p.gauges[key] ?? CoreMetrics.Gauge(label: name, dimensions: dims, factory: factory)
            p.gauges[key] = g
            g.record(value)
        }
        let t = turn.shared.stats
        gauge("webrtc_turn_allocations", t.allocationsActive.value)
        counter("webrtc_turn_allocations_total", t.allocationsCreated.value)
        gauge("webrtc_turn_permissions", allocations.reduce(0) { $0 + $1.permissions })
        gauge("webrtc_turn_channel_bindings", allocations.reduce(0) { $0 + $1.channels })
        for (direction, c) in [("to_peer", t.toPeer), ("to_client", t.toClient)] {
            for transport in FiveTuple.Transport.allCases {
                let dims = [("direction", direction), ("transport", transport.name)]
                counter("webrtc_turn_relayed_packets_total", c.packets(transport), dims)
                counter("webrtc_turn_relayed_bytes_total", c.bytes(transport), dims)
            }
        }
        for (code, n) in t.errorResponsesByCode { counter("webrtc_turn_error_responses_total", n, [("code", "\(code)")]) }
        counter("webrtc_turn_quota_rejections_total", t.quotaRejections.value)
        counter("webrtc_turn_peer_policy_rejections_total", t.peerPolicyRejections.value)
        counter("webrtc_turn_rate_limited_total", t.rateLimited.value)
        counter("webrtc_turn_bandwidth_dropped_packets_total", t.bandwidthDropped.value)
        counter("webrtc_turn_bandwidth_dropped_bytes_total", t.bandwidthDroppedBytes.value)
        counter("webrtc_turn_send_failed_packets_total", t.sendFailed.value)
        counter("webrtc_turn_malformed_dropped_total", t.malformedDropped.value)
        counter("webrtc_turn_unroutable_dropped_total", t.unroutableDropped.value)
        counter("webrtc_turn_idle_streams_closed_total", t.idleStreamsClosed.value)
        counter("webrtc_turn_stream_connections_refused_total", t.streamConnectionsRefused.value)
        counter("webrtc_auth_failures_total", t.authFailures.value, [("half", "turn")])
        counter("webrtc_auth_blocked_total", t.authBlocked.value, [("half", "turn")])
        gauge("webrtc_draining", turn.shared.isDraining ? 1 : 0)
        let s = hub.stats
        gauge("webrtc_signaling_connections", hub.connectionCount)
        gauge("webrtc_signaling_rooms", hub.roomCount)
        gauge("webrtc_signaling_peers", hub.peerCount)
        for (kind, n) in s.inbound.values { counter("webrtc_signaling_messages_in_total", n, [("kind", kind)]) }
        for (kind, n) in s.outbound.values { counter("webrtc_signaling_messages_out_total", n, [("kind", kind)]) }
        counter("webrtc_auth_failures_total", s.authFailures.load(ordering: .relaxed), [("half", "signaling")])
        counter("webrtc_auth_blocked_total", s.authBlocked.load(ordering: .relaxed), [("half", "signaling")])
        counter("webrtc_signaling_auth_timeouts_total", s.authTimeouts.load(ordering: .relaxed))
        counter("webrtc_signaling_http_timeouts_total", s.httpTimeouts.load(ordering: .relaxed))
        counter("webrtc_signaling_bad_http_requests_total", s.badHTTPRequests.load(ordering: .relaxed))
        counter("webrtc_signaling_late_upgrades_closed_total", s.lateUpgradesClosed.load(ordering: .relaxed))
        counter("webrtc_signaling_rejected_connections_total", s.rejectedConnections.load(ordering: .relaxed))
        counter("webrtc_signaling_bad_messages_total", s.badMessages.load(ordering: .relaxed))
        counter("webrtc_signaling_slow_consumers_total", s.slowConsumers.load(ordering: .relaxed))
        counter("webrtc_signaling_hook_failures_total", s.hookFailures.load(ordering: .relaxed))
        counter("webrtc_signaling_webhook_deliveries_total", s.webhookDeliveries.load(ordering: .relaxed))
        gauge("webrtc_signaling_held_sessions", s.heldSessions.load(ordering: .relaxed))
        counter("webrtc_signaling_resumes_total", s.resumes.load(ordering: .relaxed))
        counter("webrtc_signaling_failed_resumes_total", s.failedResumes.load(ordering: .relaxed))
        counter("webrtc_signaling_replayed_messages_total", s.replayedMessages.load(ordering: .relaxed))
        counter("webrtc_signaling_held_sessions_expired_total", s.heldExpired.load(ordering: .relaxed))
        if let cluster {
            let n = cluster.client.stats, c = cluster.stats
            gauge("webrtc_cluster_nats_connected", n.connected ? 1 : 0)
            gauge("webrtc_cluster_instances", cluster.instances().count)
            counter("webrtc_cluster_nats_reconnects_total", n.reconnects)
            counter("webrtc_cluster_nats_messages_total", n.messagesIn, [("direction", "in")])
            counter("webrtc_cluster_nats_messages_total", n.messagesOut, [("direction", "out")])
            counter("webrtc_cluster_nats_bytes_total", n.bytesIn, [("direction", "in")])
            counter("webrtc_cluster_nats_bytes_total", n.bytesOut, [("direction", "out")])
            counter("webrtc_cluster_nats_dropped_total", n.dropped)
            counter("webrtc_cluster_nats_server_errors_total", n.serverErrors)
            for (kind, v) in [("forwarded", c.forwarded), ("received", c.received), ("undeliverable", c.undeliverable),
                              ("broadcast_out", c.broadcastsOut), ("broadcast_in", c.broadcastsIn)] {
                counter("webrtc_cluster_messages_total", v, [("kind", kind)])
            }
            counter("webrtc_cluster_dead_instances_total", c.deadInstances)
            counter("webrtc_cluster_resyncs_total", c.resyncs)
        }
    }

    /// Resident memory and open file descriptors, read from /proc at scrape time (Linux).
    private func processMetrics() -> String {
        var out = ""
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            out += "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes \(pages * Int(sysconf(Int32(_SC_PAGESIZE))))\n"
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            out += "# TYPE process_open_fds gauge\nprocess_open_fds \(fds.count)\n"
        }
        return out
    }
}
