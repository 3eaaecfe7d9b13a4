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

/// The listening relay socket of a TCP allocation as its accepted connections see it: its handle is set
/// once the socket is bound (connections accepted before that are refused).
final class PeerAcceptor {
    var socket: SocketHandle?
}

/// A peer's side of a TCP relay connection: accepted on the relayed address, or opened by Connect.
final class PeerTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let engine: TurnEngine
    private let acceptor: PeerAcceptor?
    private var connection: PeerTCPConnection?

    init(engine: TurnEngine, acceptor: PeerAcceptor) {
        self.engine = engine
        self.acceptor = acceptor
    }

    init(engine: TurnEngine, connection: PeerTCPConnection) {
        self.engine = engine
        self.acceptor = nil
        self.connection = connection
    }

    func channelActive(context: ChannelHandlerContext) {
        if let acceptor {
            connection = acceptor.socket.flatMap { engine.peerAccepted(context.channel, on: $0) }
            if connection == nil { context.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        let bytes = unwrapInboundIn(data)
        engine.stats.toClient.add(connection.allocationFiveTuple.transport, bytes: bytes.readableBytes)
        connection.fromPeer(bytes)
    }

    /// Backpressure: this peer can take more of the client's bytes again.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection?.peerWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection { engine.peerClosed(connection) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

/// The client's data connection after ConnectionBind: bytes go to the peer as they are.
final class ClientDataHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connection: PeerTCPConnection
    private let stats: TurnStats

    init(connection: PeerTCPConnection, stats: TurnStats) {
        self.connection = connection
        self.stats = stats
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        stats.toPeer.add(connection.allocationFiveTuple.transport, bytes: bytes.readableBytes)
        guard let peer = connection.peerChannel else { return }
        peer.writeAndFlush(bytes, promise: nil)
        // The peer reads slower than the client sends: stop reading the client until it catches up.
        if !peer.isWritable {
            let channel = context.channel
            channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in
                if peer.isWritable { channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
            }
        }
    }

    /// Backpressure: the client can take more of the peer's bytes again.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection.dataWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.peerChannel?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
