import Synchronization

/// Counters of the TURN half. Atomic so any thread may read them; written from the event loops.
public final class TurnStats: Sendable {
    public let allocationsCreated = Atomic<Int>(0)
    public let allocationsActive = Atomic<Int>(0)
    public let packetsToPeer = Atomic<Int>(0)
    public let packetsToClient = Atomic<Int>(0)
    public let bytesToPeer = Atomic<Int>(0)
    public let bytesToClient = Atomic<Int>(0)
    /// Datagrams that were neither STUN nor valid ChannelData, or failed to decode.
    public let malformedDropped = Atomic<Int>(0)
    /// ChannelData/Send/peer data dropped for lack of allocation, binding or permission.
    public let unroutableDropped = Atomic<Int>(0)
    public let peerPolicyRejections = Atomic<Int>(0)
    public let quotaRejections = Atomic<Int>(0)
    public let errorResponses = Atomic<Int>(0)
    public let authFailures = Atomic<Int>(0)

    public init() {}

    @inline(__always)
    func add(_ counter: borrowing Atomic<Int>, _ n: Int = 1) {
        counter.add(n, ordering: .relaxed)
    }

    public var snapshot: [String: Int] {
        [
            "allocations_created": allocationsCreated.load(ordering: .relaxed),
            "allocations_active": allocationsActive.load(ordering: .relaxed),
            "packets_to_peer": packetsToPeer.load(ordering: .relaxed),
            "packets_to_client": packetsToClient.load(ordering: .relaxed),
            "bytes_to_peer": bytesToPeer.load(ordering: .relaxed),
            "bytes_to_client": bytesToClient.load(ordering: .relaxed),
            "malformed_dropped": malformedDropped.load(ordering: .relaxed),
            "unroutable_dropped": unroutableDropped.load(ordering: .relaxed),
            "peer_policy_rejections": peerPolicyRejections.load(ordering: .relaxed),
            "quota_rejections": quotaRejections.load(ordering: .relaxed),
            "error_responses": errorResponses.load(ordering: .relaxed),
            "auth_failures": authFailures.load(ordering: .relaxed),
        ]
    }
}
