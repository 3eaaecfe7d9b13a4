import Auth
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

    public var snapshot: [String: Int] {
        [
            "allocations_created": allocationsCreated.value,
            "allocations_active": allocationsActive.value,
            "packets_to_peer": toPeer.totalPackets,
            "packets_to_client": toClient.totalPackets,
            "bytes_to_peer": toPeer.totalBytes,
            "bytes_to_client": toClient.totalBytes,
            "malformed_dropped": malformedDropped.value,
            "unroutable_dropped": unroutableDropped.value,
            "peer_policy_rejections": peerPolicyRejections.value,
            "quota_rejections": quotaRejections.value,
            "error_responses": errorResponses.value,
            "auth_failures": authFailures.value,
            "auth_blocked": authBlocked.value,
            "rate_limited": rateLimited.value,
            "bandwidth_dropped": bandwidthDropped.value,
            "idle_streams_closed": idleStreamsClosed.value,
            "send_failed": sendFailed.value,
            "stream_connections_refused": streamConnectionsRefused.value,
        ]
    }
}
