import ServerMetrics
import Synchronization

/// Relayed packets and bytes in one direction, by the client's transport (udp, tcp, tls). Counted for
/// every relayed packet, so the counts are atomics stored inline: no counter object to retain and
/// release per packet.
public final class RelayedCounters: Sendable {
    private let packetCounts = InlineArray<3, Atomic<Int>> { _ in Atomic(0) }
    private let byteCounts = InlineArray<3, Atomic<Int>> { _ in Atomic(0) }

    @inline(__always)
    func add(_ transport: FiveTuple.Transport, bytes n: Int) {
        packetCounts[transport.index].add(1, ordering: .relaxed)
        byteCounts[transport.index].add(n, ordering: .relaxed)
    }

    public func packets(_ t: FiveTuple.Transport) -> Int { packetCounts[t.index].load(ordering: .relaxed) }
    public func bytes(_ t: FiveTuple.Transport) -> Int { byteCounts[t.index].load(ordering: .relaxed) }
    public var totalPackets: Int { FiveTuple.Transport.allCases.reduce(0) { $0 + packets($1) } }
    public var totalBytes: Int { FiveTuple.Transport.allCases.reduce(0) { $0 + bytes($1) } }
}

extension FiveTuple.Transport: CaseIterable {
    public static let allCases: [FiveTuple.Transport] = [.udp, .tcp, .tls]
    @inline(__always) var index: Int {
        switch self {
        case .udp: 0
        case .tcp: 1
        case .tls: 2
        }
    }
    public var name: String {
        switch self {
        case .udp: "udp"
        case .tcp: "tcp"
        case .tls: "tls"
        }
    }
}

/// Counters of the TURN half (read by /metrics, /api/stats, the dashboard and tests).
public final class TurnStats: Sendable {
    public let allocationsCreated = StatCounter()
    public let allocationsActive = StatCounter()
    /// Relayed data, client → peer and peer → client.
    public let toPeer = RelayedCounters()
    public let toClient = RelayedCounters()
    /// Datagrams that were neither STUN nor valid ChannelData, failed to decode, or were too long to read
    /// whole (over `DatagramDrain.slot` bytes).
    public let malformedDropped = StatCounter()
    /// ChannelData/Send/peer data dropped for lack of allocation, binding or permission.
    public let unroutableDropped = StatCounter()
    public let peerPolicyRejections = StatCounter()
    public let quotaRejections = StatCounter()
    public let errorResponses = StatCounter()
    /// 401 with wrong credentials, and 441 (not the first, credential-less challenge).
    public let authFailures = StatCounter()
    /// Requests dropped because their source is blocked after repeated authentication failures.
    public let authBlocked = StatCounter()
    /// Requests whose username only the lookup chain knew, answered after it (`auth.sqlite`, …).
    public let authLookupsWaited = StatCounter()
    /// Unauthenticated requests dropped over the per-source rate (turn.unauthenticated_rate).
    public let rateLimited = StatCounter()
    /// Relayed packets dropped over an allocation's bandwidth cap (turn.bandwidth_limit), and their bytes.
    public let bandwidthDropped = StatCounter()
    public let bandwidthDroppedBytes = StatCounter()
    /// Relayed datagrams the kernel refused to send (a full send buffer, an ICMP error reported on the
    /// socket) or whose socket closed before the end of the tick.
    public let sendFailed = StatCounter()
    /// TCP/TLS connections closed for holding no allocation and sending nothing for turn.stream_idle_timeout.
    public let idleStreamsClosed = StatCounter()
    /// TCP/TLS connections closed at accept: their source had turn.max_connections_per_source open.
    public let streamConnectionsRefused = StatCounter()
    private let errorCodes = Mutex<[Int: Int]>([:])

    public init() {}

    func countError(_ code: Int) {
        errorResponses.add()
        errorCodes.withLock { $0[code, default: 0] += 1 }
    }

    /// Error responses sent, by code.
    public var errorResponsesByCode: [Int: Int] { errorCodes.withLock { $0 } }

    /// Every TURN counter, once: its Prometheus name, its `/api/stats` key and what it counts. (Permissions,
    /// channel bindings and the drain flag are read from the allocations and the server at scrape time.)
    public var metrics: [Metric] {
        func relayed(_ name: String, bytes: Bool, help: String) -> Metric {
            Metric(name, .counter, labels: ["direction", "transport"], help: help) {
                [("to_peer", self.toPeer), ("to_client", self.toClient)].flatMap { direction, c in
                    FiveTuple.Transport.allCases.map { t in
                        Metric.Sample([("direction", direction), ("transport", t.name)], bytes ? c.bytes(t) : c.packets(t))
                    }
                }
            }
        }
        return [
            .gauge("webrtc_turn_allocations", json: "allocations_active", help: "allocations now", allocationsActive),
            .counter("webrtc_turn_allocations_total", json: "allocations_created", help: "allocations made", allocationsCreated),
            relayed("webrtc_turn_relayed_packets_total", bytes: false,
                    help: "packets relayed, by `direction` (`to_peer`, `to_client`) and the client's `transport` (`udp`, `tcp`, `tls`)"),
            relayed("webrtc_turn_relayed_bytes_total", bytes: true, help: "payload bytes relayed, by direction and transport"),
            .value(nil, .counter, json: "packets_to_peer", help: "") { self.toPeer.totalPackets },
            .value(nil, .counter, json: "packets_to_client", help: "") { self.toClient.totalPackets },
            .value(nil, .counter, json: "bytes_to_peer", help: "") { self.toPeer.totalBytes },
            .value(nil, .counter, json: "bytes_to_client", help: "") { self.toClient.totalBytes },
            .counter("webrtc_turn_malformed_dropped_total", json: "malformed_dropped",
                     help: "datagrams and frames that are neither STUN nor ChannelData, fail to decode, or are over 2048 bytes", malformedDropped),
            .counter("webrtc_turn_unroutable_dropped_total", json: "unroutable_dropped",
                     help: "ChannelData, Send and peer data without an allocation, binding or permission", unroutableDropped),
            .counter("webrtc_turn_peer_policy_rejections_total", json: "peer_policy_rejections", help: "peers refused by the peer policy", peerPolicyRejections),
            .counter("webrtc_turn_quota_rejections_total", json: "quota_rejections",
                     help: "requests refused by a quota or cap (allocations, permissions, channels, peer connections)", quotaRejections),
            .counter(nil, json: "error_responses", help: "", errorResponses),
            Metric("webrtc_turn_error_responses_total", .counter, labels: ["code"], help: "error responses, by `code`") {
                self.errorResponsesByCode.sorted { $0.key < $1.key }.map { Metric.Sample([("code", "\($0.key)")], $0.value) }
            },
            Metric("webrtc_auth_failures_total", .counter, labels: ["half"], json: "auth_failures", jsonByLabel: false,
                   help: "failed logins (signaling `authenticate` and `resume`; TURN: 401 with wrong credentials and 441)") {
                [.init([("half", "turn")], self.authFailures.value)]
            },
            Metric("webrtc_auth_blocked_total", .counter, labels: ["half"], json: "auth_blocked", jsonByLabel: false,
                   help: "logins refused without a check because their source is blocked (auth throttle)") {
                [.init([("half", "turn")], self.authBlocked.value)]
            },
            .counter("webrtc_turn_auth_lookups_waited_total", json: "auth_lookups_waited",
                     help: "TURN requests answered after waiting for the password lookup chain (a cache miss)", authLookupsWaited),
            .counter("webrtc_turn_rate_limited_total", json: "rate_limited",
                     help: "requests without integrity dropped over `turn.unauthenticated_rate`", rateLimited),
            .counter("webrtc_turn_bandwidth_dropped_packets_total", json: "bandwidth_dropped",
                     help: "relayed packets dropped over `turn.bandwidth_limit`", bandwidthDropped),
            .counter("webrtc_turn_bandwidth_dropped_bytes_total", help: "their bytes", bandwidthDroppedBytes),
            .counter("webrtc_turn_send_failed_packets_total", json: "send_failed",
                     help: "relayed datagrams the kernel refused to send", sendFailed),
            .counter("webrtc_turn_idle_streams_closed_total", json: "idle_streams_closed",
                     help: "TCP/TLS connections closed by `turn.stream_idle_timeout`", idleStreamsClosed),
            .counter("webrtc_turn_stream_connections_refused_total", json: "stream_connections_refused",
                     help: "TCP/TLS connections over `turn.max_connections_per_source`", streamConnectionsRefused),
        ]
    }

    /// The unlabelled counters by their `/api/stats` key.
    public var snapshot: [String: Int] {
        var out: [String: Int] = [:]
        for m in metrics where !m.jsonByLabel {
            if let key = m.json { out[key] = m.total }
        }
        return out
    }
}
