import NIOCore

/// The relay socket of one allocation: datagrams from peers go to the engine's relay path; the client
/// side is flushed once per read batch.
///
/// It holds its allocation strongly (a weak reference would move the allocation's reference counts to a
/// side table, which every retain and release on the relay path would then go through); the engine
/// clears it when it deletes the allocation, and closing the socket removes the handler anyway.
final class RelaySocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    unowned let engine: TurnEngine
    var allocation: Allocation?

    init(engine: TurnEngine) { self.engine = engine }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let allocation else { return }
        engine.relayFromPeer(allocation, unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let allocation { engine.flushToClient(allocation) }
    }

    /// Drops the handler's reference to its allocation (called when the allocation is deleted).
    static func detach(_ channel: Channel) {
        (try? channel.pipeline.syncOperations.handler(type: RelaySocketHandler.self))?.allocation = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP port unreachable from a peer that is gone: the relay stays up.
        engine.logger.trace("relay socket error", metadata: ["error": "\(error)"])
    }
}
