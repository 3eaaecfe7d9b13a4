import NIOCore

/// The long-term credential an allocation was created with; every later request on it must match
/// (RFC 8656 §5: same username, realm and key → otherwise 441).
struct SessionCredential {
    let username: String
    let realm: String
    let key: [UInt8]
    let algorithm: PasswordAlgorithm
    /// Whom `turn.max_allocations_per_user` counts this credential against: the person behind it, not
    /// the minted name (`PasswordCandidate.owner`).
    let quotaOwner: String
    /// The signaling session of a session credential: the allocation ends when the session does.
    let session: String?
}

/// The IPv6 half of a dual allocation (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY): its own relay socket
/// and relayed address; permissions and channel bindings are the allocation's, whatever the family.
struct AdditionalRelay {
    let socket: SocketHandle
    let relayedAddress: TransportAddress
}

/// One allocation (RFC 8656 §5): the relayed transport address, its relay socket, permissions and
/// channel bindings. Confined to the event loop of the listener that created it; what it acquired
/// (quota, ports, sockets, peer connections) is its lease's, released by `AllocationManager.end`.
final class Allocation {
    let fiveTuple: FiveTuple
    let credential: SessionCredential
    /// What the client is told (XOR-RELAYED-ADDRESS): the external address when configured.
    let relayedAddress: TransportAddress
    /// The relay socket (for a TCP allocation a listening socket, whose descriptor is not written to).
    let relaySocket: SocketHandle
    /// Where relayed data and answers to the client go out.
    let clientPath: ClientPath
    let lease: AllocationLease
    var expires: NIODeadline
    var permissions = PermissionTable()
    var channels = ChannelBindingTable()
    /// A retransmitted Allocate (same transaction id) gets this same answer again (§7.2).
    let allocateTransaction: TransactionID
    var allocateResponse: ByteBuffer?
    /// The second relayed address of a dual allocation, if any.
    let additional: AdditionalRelay?
    /// RFC 6062: a TCP allocation relays over peer connections (opened by Connect or accepted from
    /// permitted peers), not datagrams; nil for a UDP allocation.
    var peerConnections: [UInt32: PeerTCPConnection]?
    var isTCP: Bool { peerConnections != nil }
    /// True when `toPeer` holds datagrams of this read batch (queued on the sink when the batch ends).
    var relayNeedsFlush = false
    /// Datagrams to peers, and to the client, waiting for the end of the read batch (GSO batching).
    var toPeer = DatagramCoalescer()
    var toClient = DatagramCoalescer()
    /// Payload bytes relayed each way (for the dashboard), and the bandwidth cap's bucket.
    var bytesToPeer = 0
    var bytesToClient = 0
    var bandwidth = BandwidthBucket()

    init(fiveTuple: FiveTuple, credential: SessionCredential, relayedAddress: TransportAddress, relaySocket: SocketHandle,
         additional: AdditionalRelay?, tcp: Bool, clientPath: ClientPath, lease: AllocationLease, expires: NIODeadline,
         allocateTransaction: TransactionID) {
        self.fiveTuple = fiveTuple
        self.credential = credential
        self.relayedAddress = relayedAddress
        self.relaySocket = relaySocket
        self.additional = additional
        self.peerConnections = tcp ? [:] : nil
        self.clientPath = clientPath
        self.lease = lease
        self.expires = expires
        self.allocateTransaction = allocateTransaction
    }

    /// True when the allocation has a relayed address of `ip`'s family.
    func relays(familyOf ip: IPAddress) -> Bool {
        ip.isIPv6 == relayedAddress.ip.isIPv6 || (additional.map { ip.isIPv6 == $0.relayedAddress.ip.isIPv6 } ?? false)
    }

    /// §5.2: one connection per peer address (a second Connect is 446).
    func hasPeerConnection(to peer: TransportAddress) -> Bool {
        peerConnections?.values.contains { $0.peer == peer } ?? false
    }
}
