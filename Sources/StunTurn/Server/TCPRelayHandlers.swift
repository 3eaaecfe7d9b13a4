import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// RFC 6062: TURN allocations that relay TCP. The allocation's relayed address is a listening TCP
/// socket; Connect opens a connection from it to a peer, a peer connecting to it is announced with a
/// ConnectionAttempt indication, and a ConnectionBind on a new client connection joins the two.
extension TurnEngine {
    /// RFC 6062 §5.1: Allocate with REQUESTED-TRANSPORT TCP, over TCP or TLS only, without DONT-FRAGMENT,
    /// EVEN-PORT or RESERVATION-TOKEN (400 otherwise). Binds the listening relay socket.
    func bindTCPRelay(port: UInt16, family: AddressFamily, box: TCPRelayListener,
                      completion: @escaping (Result<Channel, Error>) -> Void) {
        let host = family == .ipv6 ? configuration.relayBindAddress6 : configuration.relayBindAddress
        let engine = self
        TurnServer.server(eventLoop, eventLoop, v6: family == .ipv6)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(SOL_SOCKET)), name: .init(rawValue: CInt(SO_REUSEPORT))), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PeerTCPHandler(engine: engine, listener: box))
                }
            }
            .bind(host: host, port: Int(port))
            .hop(to: eventLoop)
            .assumeIsolated()
            .whenComplete { completion($0) }
    }

    /// RFC 6062 §5.2, receiving a Connect request.
    func handleConnect(_ m: StunMessage, _ context: RequestContext) {
        let allocation = allocations[context.fiveTuple]
        guard let (integrity, _) = authenticate(m, context, existing: allocation) else { return }
        guard let allocation else {
            respond(to: m, context, error: .allocationMismatch, integrity: integrity)
            return
        }
        guard let listener = allocation.tcpListener, let peer = m.xorAddress(AttributeType.xorPeerAddress) else {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        if let error = checkPeers([peer], allocation: allocation, byPort: true) {
            respond(to: m, context, error: error, integrity: integrity)
            return
        }
        // §5.2: a connection (or connection attempt) to this peer already exists → 446.
        guard !listener.hasConnection(to: peer) else {
            respond(to: m, context, error: .connectionAlreadyExists, integrity: integrity)
            return
        }
        guard listener.connections.count < TCPRelayListener.maxConnections else {
            stats.quotaRejections.add()
            respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
            return
        }
        let connection = shared.tcpConnections.register {
            PeerTCPConnection(id: $0, peer: peer, username: allocation.credential.username, allocation: allocation.fiveTuple)
        }
        listener.connections[connection.id] = connection
        let engine = self
        let local = allocation.relayChannel.localAddress
        var bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(SOL_SOCKET)), name: .init(rawValue: CInt(SO_REUSEPORT))), value: 1)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PeerTCPHandler(engine: engine, connection: connection))
                }
            }
        // The connection leaves from the relayed transport address (§5.2).
        if let local { bootstrap = bootstrap.bind(to: local) }
        bootstrap.connect(to: peer.socketAddress())
            .hop(to: eventLoop)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard allocations[allocation.fiveTuple] === allocation else {
                        channel.close(promise: nil)
                        return
                    }
                    connection.peerChannel = channel
                    allocation.permissions.install(peer.ip, until: .now() + .seconds(configuration.permissionLifetime))
                    channel.eventLoop.execute { connection.startBindTimer { channel.close(promise: nil) } }
                    var r = makeResponse(to: m, error: nil)
                    r.appendConnectionID(connection.id)
                    _ = send(r, for: m, context, integrity: integrity, flush: true)
                case .failure(let error):
                    listener.connections.removeValue(forKey: connection.id)
                    shared.tcpConnections.remove(connection.id)
                    logger.debug("Connect failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
                    respond(to: m, context, error: .connectionTimeoutOrFailure, integrity: integrity, flush: true)
                }
            }
    }

    /// RFC 6062 §5.3: a peer connected to a TCP allocation's relayed address. Without a permission for
    /// its IP it is closed; otherwise the client hears a ConnectionAttempt indication.
    func peerConnected(_ channel: Channel, listener: TCPRelayListener) -> PeerTCPConnection? {
        guard let allocation = listener.allocation, allocations[allocation.fiveTuple] === allocation,
              let peer = channel.remoteAddress.flatMap(TransportAddress.init),
              allocation.permissions.permits(peer.ip, now: .now()),
              !listener.hasConnection(to: peer),
              listener.connections.count < TCPRelayListener.maxConnections
        else {
            stats.unroutableDropped.add()
            return nil
        }
        let connection = shared.tcpConnections.register {
            PeerTCPConnection(id: $0, peer: peer, username: allocation.credential.username, allocation: allocation.fiveTuple)
        }
        listener.connections[connection.id] = connection
        connection.peerChannel = channel
        connection.startBindTimer { channel.close(promise: nil) }
        var indication = StunMessage(method: .connectionAttempt, messageClass: .indication)
        indication.appendXorAddress(AttributeType.xorPeerAddress, peer)
        indication.appendConnectionID(connection.id)
        allocation.clientPath.write(channel.allocator.buffer(bytes: indication.encode()))
        allocation.clientPath.flush()
        return connection
    }

    /// A peer TCP connection ended: forget it, and end its data connection.
    func peerClosed(_ connection: PeerTCPConnection) {
        shared.tcpConnections.remove(connection.id)
        if let listener = allocations[connection.allocationFiveTuple]?.tcpListener {
            listener.connections.removeValue(forKey: connection.id)
        }
        connection.closeBoth()
    }

    /// RFC 6062 §5.4, receiving a ConnectionBind request on a new TCP/TLS connection: authenticated as
    /// the allocation's user, naming a connection not yet bound. After the success response the
    /// connection stops carrying STUN and becomes the byte pipe to the peer.
    func handleConnectionBind(_ m: StunMessage, _ context: RequestContext) {
        guard case .stream(let dataChannel) = context.path else {
            respond(to: m, context, error: .badRequest, integrity: nil)
            return
        }
        guard let (integrity, credential) = authenticate(m, context, existing: nil) else { return }
        guard allocations[context.fiveTuple] == nil, let id = m.connectionID, let connection = shared.tcpConnections.claim(id) else {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        guard connection.username == credential.username else {
            respond(to: m, context, error: .wrongCredentials, integrity: integrity)
            return
        }
        _ = send(makeResponse(to: m, error: nil), for: m, context, integrity: integrity, flush: true)
        // After this read is handled: no more STUN framing on this connection.
        dataChannel.eventLoop.assumeIsolated().execute {
            let ops = dataChannel.pipeline.syncOperations
            if let framer = try? ops.handler(type: StunStreamFramer.self) { ops.removeHandler(framer, promise: nil) }
            if let handler = try? ops.handler(type: StreamConnectionHandler.self) { ops.removeHandler(handler, promise: nil) }
            try? ops.addHandler(ClientDataHandler(connection: connection, engine: self))
            connection.peerChannel?.eventLoop.execute { connection.bind(dataChannel) }
        }
    }
}

/// The listening relay socket of a TCP allocation, shared with its accepted connections.
final class TCPRelayListener: @unchecked Sendable {
    /// Peer connections (opened by Connect or accepted from permitted peers) one TCP allocation may have
    /// at once: each may hold `PeerTCPConnection.maxPending` bytes until it is bound, and a permitted peer
    /// could otherwise open them from any number of source ports. Connect beyond → 508; a peer beyond is closed.
    static let maxConnections = 128

    weak var allocation: Allocation?
    /// Its peer connections (and Connect attempts in progress), closed with the allocation.
    var connections: [UInt32: PeerTCPConnection] = [:]

    /// §5.2: one connection per peer address (a second Connect is 446).
    func hasConnection(to peer: TransportAddress) -> Bool { connections.values.contains { $0.peer == peer } }
}

/// A peer's side of a TCP relay connection: accepted on the relayed address, or opened by Connect.
final class PeerTCPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    unowned let engine: TurnEngine
    let listener: TCPRelayListener?
    var connection: PeerTCPConnection?

    init(engine: TurnEngine, listener: TCPRelayListener) {
        self.engine = engine
        self.listener = listener
    }

    init(engine: TurnEngine, connection: PeerTCPConnection) {
        self.engine = engine
        self.listener = nil
        self.connection = connection
    }

    func channelActive(context: ChannelHandlerContext) {
        if let listener {
            connection = engine.peerConnected(context.channel, listener: listener)
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

    let connection: PeerTCPConnection
    unowned let engine: TurnEngine

    init(connection: PeerTCPConnection, engine: TurnEngine) {
        self.connection = connection
        self.engine = engine
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        engine.stats.toPeer.add(connection.allocationFiveTuple.transport, bytes: bytes.readableBytes)
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
