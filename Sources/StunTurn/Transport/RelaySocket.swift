import NIOCore

/// The relay socket of one allocation: datagrams from peers go to the engine's relay path; the client
/// side is flushed once per read batch.
final class RelaySocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    unowned let engine: TurnEngine
    weak var allocation: Allocation?

    init(engine: TurnEngine) { self.engine = engine }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let allocation else { return }
        engine.relayFromPeer(allocation, unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let allocation { engine.flushToClient(allocation) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP port unreachable from a peer that is gone: the relay stays up.
        engine.logger.trace("relay socket error", metadata: ["error": "\(error)"])
    }
}
