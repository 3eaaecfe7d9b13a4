import NIOCore

/// One TCP or TLS client connection (RFC 8656 §3.1): framed messages go to the engine with this
/// connection as their path back; when the connection closes, the allocation made over it is released
/// (§5: a TCP/TLS allocation lives as long as its connection).
///
/// A connection that holds no allocation is closed once it has gone `idleTimeout` without a complete
/// message, counted from its accept: a client that connects and sends nothing, never finishes its TLS
/// handshake, or stays after deleting its allocation does not hold a descriptor for ever. While an
/// allocation lives on the connection, the allocation's lifetime governs instead.
final class StreamConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let engine: TurnEngine
    private let transport: FiveTuple.Transport
    /// `.zero` = never.
    private let idleTimeout: TimeAmount
    private var fiveTuple: FiveTuple?
    /// This connection as the core writes to it.
    private var link: ChannelStreamLink?
    private var lastMessage = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?

    init(engine: TurnEngine, transport: FiveTuple.Transport, idleTimeout: TimeAmount) {
        self.engine = engine
        self.transport = transport
        self.idleTimeout = idleTimeout
    }

    func channelActive(context: ChannelHandlerContext) {
        if let client = context.remoteAddress.flatMap(TransportAddress.init),
           let server = context.localAddress.flatMap(TransportAddress.init) {
            fiveTuple = FiveTuple(client: client, server: server, transport: transport)
        }
        link = ChannelStreamLink(channel: context.channel, engine: engine)
        lastMessage = .now()
        scheduleIdleCheck(context, at: lastMessage + idleTimeout)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let fiveTuple, let link else { return }
        if idleTimeout > .zero { lastMessage = .now() }
        engine.receive(unwrapInboundIn(data), fiveTuple: fiveTuple, path: .stream(link))
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard idleTimeout > .zero else { return }
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            idleCheck = nil
            let now = NIODeadline.now()
            if let fiveTuple, engine.core.hasAllocation(fiveTuple) {
                scheduleIdleCheck(context, at: now + idleTimeout)
            } else if now >= lastMessage + idleTimeout {
                engine.stats.idleStreamsClosed.add()
                engine.logger.debug("closing an idle TCP/TLS connection without an allocation", metadata: ["transport": "\(transport)"])
                context.close(promise: nil)
            } else {
                scheduleIdleCheck(context, at: lastMessage + idleTimeout)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A ConnectionBind (RFC 6062) turns the connection into a data pipe: this handler goes, and so
        // does its clock.
        idleCheck?.cancel()
        idleCheck = nil
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        engine.core.endOfReadBatch()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let fiveTuple { engine.streamClosed(fiveTuple) }
        link = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        engine.logger.debug("stream connection error", metadata: ["transport": "\(transport)", "error": "\(error)"])
        context.close(promise: nil)
    }
}

/// A client's TCP/TLS connection as the core writes to it: written now, flushed at the end of the tick.
final class ChannelStreamLink: StreamLink {
    let channel: Channel
    unowned let engine: TurnEngine

    init(channel: Channel, engine: TurnEngine) {
        self.channel = channel
        self.engine = engine
    }

    func write(_ buffer: ByteBuffer) {
        channel.write(buffer, promise: nil)
        engine.streamWritten(channel)
    }

    /// After a ConnectionBind (RFC 6062 §5.4): this connection stops carrying STUN and becomes the byte pipe
    /// of `connection`; bytes the peer sent meanwhile go out first.
    func becomeDataConnection(of connection: PeerTCPConnection, stats: TurnStats) {
        let channel = channel
        channel.eventLoop.assumeIsolated().execute {
            let ops = channel.pipeline.syncOperations
            if let framer = try? ops.handler(type: StunStreamFramer.self) { ops.removeHandler(framer, promise: nil) }
            if let handler = try? ops.handler(type: StreamConnectionHandler.self) { ops.removeHandler(handler, promise: nil) }
            try? ops.addHandler(ClientDataHandler(connection: connection, stats: stats))
            connection.peerChannel?.eventLoop.execute { connection.bind(channel) }
        }
    }
}
