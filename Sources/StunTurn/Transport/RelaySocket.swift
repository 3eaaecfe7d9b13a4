import NIOCore

/// The relay socket of one allocation: datagrams from peers go to the engine's relay path; what a read
/// batch relays to the client is queued on the writer when the batch ends.
///
/// It holds its allocation strongly (a weak reference would move the allocation's reference counts to a
/// side table, which every retain and release on the relay path would then go through). Deleting the
/// allocation closes its relay socket, and NIO removes a closed channel's handlers, which lets go of it.
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
        if let allocation { engine.queueToClient(allocation) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP port unreachable from a peer that is gone: the relay stays up.
        engine.logger.trace("relay socket error", metadata: ["error": "\(error)"])
    }
}
