import NIOCore
import Synchronization

/// One peer TCP connection of a TCP allocation (RFC 6062 §5.2, §5.3), named by its CONNECTION-ID until
/// the client's data connection binds to it; after that the two connections are one byte pipe.
///
/// `@unchecked Sendable`: `dataChannel`, `pending` and `bindTimer` are touched on the peer channel's
/// event loop only, `claimed` under the registry's lock; the rest is set before the connection is shared.
final class PeerTCPConnection: @unchecked Sendable {
    /// Data a peer may send before the client's data connection is bound (RFC 6062 §5.3 lets the server
    /// buffer it); beyond this the peer connection is closed.
    static let maxPending = 64 * 1024
    /// RFC 6062 §5.2/§5.3: a connection not bound within 30 seconds is closed.
    static let bindTimeout: TimeAmount = .seconds(30)

    let id: UInt32
    let peer: TransportAddress
    let username: String
    let allocationFiveTuple: FiveTuple
    var peerChannel: Channel?
    /// Set under the registry's lock when a ConnectionBind takes this connection.
    var claimed = false
    private var dataChannel: Channel?
    private var pending: [ByteBuffer] = []
    private var pendingBytes = 0
    private var bindTimer: Scheduled<Void>?

    init(id: UInt32, peer: TransportAddress, username: String, allocation: FiveTuple) {
        self.id = id
        self.peer = peer
        self.username = username
        self.allocationFiveTuple = allocation
    }

    var isBound: Bool { dataChannel != nil }

    /// On the peer loop: start the 30 s bind clock.
    func startBindTimer(onExpiry: @escaping () -> Void) {
        guard let loop = peerChannel?.eventLoop else { return }
        bindTimer = loop.assumeIsolated().scheduleTask(in: Self.bindTimeout) { [self] in
            if dataChannel == nil { onExpiry() }
        }
    }

    /// On the peer loop: bytes from the peer go to the data connection, or wait for it. When the client
    /// reads slower than the peer sends, reading from the peer pauses until the client catches up.
    func fromPeer(_ bytes: ByteBuffer) {
        if let dataChannel {
            dataChannel.writeAndFlush(bytes, promise: nil)
            if !dataChannel.isWritable, let peerChannel {
                // Pause, then look again: writability may have come back while pausing.
                peerChannel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in
                    if dataChannel.isWritable { peerChannel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
                }
            }
            return
        }
        pendingBytes += bytes.readableBytes
        guard pendingBytes <= Self.maxPending else {
            peerChannel?.close(promise: nil)
            return
        }
        pending.append(bytes)
    }

    /// On the peer loop: the client's data connection is bound; waiting bytes go out first.
    func bind(_ channel: Channel) {
        bindTimer?.cancel()
        dataChannel = channel
        for b in pending { channel.write(b, promise: nil) }
        channel.flush()
        pending = []
        pendingBytes = 0
    }

    /// The client side can take more again: resume reading from the peer.
    func dataWritable() { peerChannel?.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }

    /// The peer side can take more again: resume reading from the client.
    func peerWritable() { dataChannel?.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }

    /// Either side closed: close the other.
    func closeBoth() {
        bindTimer?.cancel()
        peerChannel?.close(promise: nil)
        dataChannel?.close(promise: nil)
    }
}

/// CONNECTION-IDs of every engine (a data connection may land on another event loop than its peer
/// connection). Ids are random, non-zero and unique among live connections.
final class TCPConnectionRegistry: Sendable {
    private let connections = Mutex<[UInt32: PeerTCPConnection]>([:])

    func register(_ make: (UInt32) -> PeerTCPConnection) -> PeerTCPConnection {
        connections.withLock { all in
            var id = UInt32.random(in: 1...UInt32.max)
            while all[id] != nil { id = UInt32.random(in: 1...UInt32.max) }
            let c = make(id)
            all[id] = c
            return c
        }
    }

    func lookup(_ id: UInt32) -> PeerTCPConnection? { connections.withLock { $0[id] } }

    /// Takes the connection for binding: a second ConnectionBind for the same id finds nothing.
    func claim(_ id: UInt32) -> PeerTCPConnection? {
        connections.withLock { all in
            guard let c = all[id], !c.claimed else { return nil }
            c.claimed = true
            return c
        }
    }

    func remove(_ id: UInt32) { connections.withLock { _ = $0.removeValue(forKey: id) } }
}
