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
final class AdditionalRelay {
    let channel: Channel
    let relayedAddress: TransportAddress
    let port: UInt16

    init(channel: Channel, relayedAddress: TransportAddress, port: UInt16) {
        self.channel = channel
        self.relayedAddress = relayedAddress
        self.port = port
    }
}

/// One allocation (RFC 8656 §5): the relayed transport address, its relay socket, permissions and
/// channel bindings. Confined to the event loop of the listener that created it.
final class Allocation {
    let fiveTuple: FiveTuple
    let credential: SessionCredential
    /// What the client is told (XOR-RELAYED-ADDRESS): the external address when configured.
    let relayedAddress: TransportAddress
    let relayPort: UInt16
    /// The relay socket (for a TCP allocation a listening socket, whose descriptor is not written to).
    let relaySocket: WritableSocket
    var relayChannel: Channel { relaySocket.channel }
    /// Where relayed data and answers to the client go out.
    let clientPath: ClientPath
    var expires: NIODeadline
    var permissions = PermissionTable()
    var channels = ChannelBindingTable()
    /// A retransmitted Allocate (same transaction id) gets this same answer again (§7.2).
    let allocateTransaction: TransactionID
    var allocateResponse: [UInt8] = []
    /// The second relayed address of a dual allocation, if any.
    var additional: AdditionalRelay?
    /// RFC 6062: set for a TCP allocation, whose relay channel is a listening socket.
    var tcpListener: TCPRelayListener?
    /// The port held under a RESERVATION-TOKEN for this allocation's EVEN-PORT request, if any.
    var reservedToken: UInt64?
    /// True when `toPeer` holds datagrams of this read batch (queued on the writer when the batch ends).
    var relayNeedsFlush = false
    /// Datagrams to peers, and to the client, waiting for the end of the read batch (GSO batching).
    var toPeer = DatagramCoalescer()
    var toClient = DatagramCoalescer()
    /// Payload bytes relayed each way (for the dashboard), and the bandwidth cap's bucket.
    var bytesToPeer = 0
    var bytesToClient = 0
    var bandwidth = BandwidthBucket()

    /// True when the allocation has a relayed address of `ip`'s family.
    func relays(familyOf ip: IPAddress) -> Bool {
        ip.isIPv6 == relayedAddress.ip.isIPv6 || (additional.map { ip.isIPv6 == $0.relayedAddress.ip.isIPv6 } ?? false)
    }

    init(fiveTuple: FiveTuple, credential: SessionCredential, relayedAddress: TransportAddress, relayPort: UInt16,
         relaySocket: WritableSocket, clientPath: ClientPath, expires: NIODeadline,
         allocateTransaction: TransactionID) {
        self.fiveTuple = fiveTuple
        self.credential = credential
        self.relayedAddress = relayedAddress
        self.relayPort = relayPort
        self.relaySocket = relaySocket
        self.clientPath = clientPath
        self.expires = expires
        self.allocateTransaction = allocateTransaction
    }
}
