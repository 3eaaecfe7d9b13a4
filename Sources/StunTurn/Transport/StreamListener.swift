import NIOCore

/// One TCP or TLS client connection (RFC 8656 §3.1): framed messages go to the engine with this
/// connection as their path back; when the connection closes, the allocation made over it is released
/// (§5: a TCP/TLS allocation lives as long as its connection).
final class StreamConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    let engine: TurnEngine
    let transport: FiveTuple.Transport
    private var fiveTuple: FiveTuple?

    init(engine: TurnEngine, transport: FiveTuple.Transport) {
        self.engine = engine
        self.transport = transport
    }

    func channelActive(context: ChannelHandlerContext) {
        if let client = context.remoteAddress.flatMap(TransportAddress.init),
           let server = context.localAddress.flatMap(TransportAddress.init) {
            fiveTuple = FiveTuple(client: client, server: server, transport: transport)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let fiveTuple else { return }
        engine.receive(unwrapInboundIn(data), context: RequestContext(fiveTuple: fiveTuple, path: .stream(context.channel)))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        engine.flushDirtyRelays()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let fiveTuple { engine.streamClosed(fiveTuple) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        engine.logger.debug("stream connection error", metadata: ["transport": "\(transport)", "error": "\(error)"])
        context.close(promise: nil)
    }
}
