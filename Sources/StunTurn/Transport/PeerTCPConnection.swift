import NIOCore
import Synchronization

/// One peer TCP connection of a TCP allocation (RFC 6062 §5.2, §5.3), named by its CONNECTION-ID until
/// the client's data connection binds to it; after that the two connections are one byte pipe. Its
/// changing parts are behind one lock: the peer's loop, the client's loop and the registry all reach it.
final class PeerTCPConnection: Sendable {
    /// Data a peer may send before the client's data connection is bound (RFC 6062 §5.3 lets the server
    /// buffer it); beyond this the peer connection is closed.
    static let maxPending = 64 * 1024
    /// RFC 6062 §5.2/§5.3: a connection not bound within 30 seconds is closed.
    static let bindTimeout: TimeAmount = .seconds(30)

    let id: UInt32
    let peer: TransportAddress
    let username: String
    let allocationFiveTuple: FiveTuple

    private struct State {
        var peerChannel: Channel?
        /// Set when a ConnectionBind takes this connection (the registry's `claim`).
        var claimed = false
        var dataChannel: Channel?
        var pending: [ByteBuffer] = []
        var pendingBytes = 0
        var bindTimer: Scheduled<Void>?
    }
    private let state = Mutex(State())

    init(id: UInt32, peer: TransportAddress, username: String, allocation: FiveTuple) {
        self.id = id
        self.peer = peer
        self.username = username
        self.allocationFiveTuple = allocation
    }

    var peerChannel: Channel? {
        get { state.withLock { $0.peerChannel } }
        set { state.withLock { $0.peerChannel = newValue } }
    }

    /// Takes the connection for a ConnectionBind; false if another already did.
    func claim() -> Bool {
        state.withLock { s in
            guard !s.claimed else { return false }
            s.claimed = true
            return true
        }
    }

    var isBound: Bool { state.withLock { $0.dataChannel != nil } }

    /// On the peer loop: start the 30 s bind clock.
    func startBindTimer(onExpiry: @escaping @Sendable () -> Void) {
        guard let loop = peerChannel?.eventLoop else { return }
        let timer = loop.scheduleTask(in: Self.bindTimeout) { [self] in
            if !isBound { onExpiry() }
        }
        state.withLock { $0.bindTimer = timer }
    }

    /// On the peer loop: bytes from the peer go to the data connection, or wait for it. When the client
    /// reads slower than the peer sends, reading from the peer pauses until the client catches up.
    func fromPeer(_ bytes: ByteBuffer) {
        enum Next { case send(Channel, Channel?), wait, overflow(Channel?) }
        let next = state.withLock { s -> Next in
            if let data = s.dataChannel { return .send(data, s.peerChannel) }
            s.pendingBytes += bytes.readableBytes
            guard s.pendingBytes <= Self.maxPending else { return .overflow(s.peerChannel) }
            s.pending.append(bytes)
            return .wait
        }
        switch next {
        case .wait: return
        case .overflow(let peerChannel): peerChannel?.close(promise: nil)
        case .send(let dataChannel, let peerChannel):
            dataChannel.writeAndFlush(bytes, promise: nil)
            if !dataChannel.isWritable, let peerChannel {
                // Pause, then look again: writability may have come back while pausing.
                peerChannel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in
                    if dataChannel.isWritable { peerChannel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
                }
            }
        }
    }

    /// On the peer loop: the client's data connection is bound; waiting bytes go out first.
    func bind(_ channel: Channel) {
        let (timer, pending) = state.withLock { s -> (Scheduled<Void>?, [ByteBuffer]) in
            s.dataChannel = channel
            defer {
                s.pending = []
                s.pendingBytes = 0
            }
            return (s.bindTimer, s.pending)
        }
        timer?.cancel()
        for b in pending { channel.write(b, promise: nil) }
        channel.flush()
    }

    /// The client side can take more again: resume reading from the peer.
    func dataWritable() { peerChannel?.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }

    /// The peer side can take more again: resume reading from the client.
    func peerWritable() {
        state.withLock { $0.dataChannel }?.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
    }

    /// Either side closed: close the other.
    func closeBoth() {
        let (timer, peer, data) = state.withLock { ($0.bindTimer, $0.peerChannel, $0.dataChannel) }
        timer?.cancel()
        peer?.close(promise: nil)
        data?.close(promise: nil)
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
    /// The peer's side, open before any ConnectionBind can name the connection (read once, not per read).
    private let peer: Channel?

    init(connection: PeerTCPConnection, stats: TurnStats) {
        self.connection = connection
        self.stats = stats
        self.peer = connection.peerChannel
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        stats.toPeer.add(connection.allocationFiveTuple.transport, bytes: bytes.readableBytes)
        guard let peer else { return }
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
        peer?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
