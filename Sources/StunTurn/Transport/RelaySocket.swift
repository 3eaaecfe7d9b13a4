import NIOCore

/// The relay socket of one allocation: datagrams from peers go to the engine's relay path (NIO reads the
/// first of each wake-up, the handler the rest from descriptor `fd` with the engine's `DatagramDrain`);
/// what a read batch relays to the client is queued on the writer when the batch ends.
///
/// It holds its allocation strongly (a weak reference would move the allocation's reference counts to a
/// side table, which every retain and release on the relay path would then go through). Deleting the
/// allocation closes its relay socket, and NIO removes a closed channel's handlers, which lets go of it.
final class RelaySocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    unowned let engine: TurnEngine
    let fd: CInt
    var allocation: Allocation?

    init(engine: TurnEngine, fd: CInt) {
        self.engine = engine
        self.fd = fd
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard DatagramDrain.fits(envelope.data) else {
            engine.stats.malformedDropped.add()
            return
        }
        guard let allocation, let peer = TransportAddress(envelope.remoteAddress) else { return }
        engine.relayFromPeer(allocation, from: peer, envelope.data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let allocation else { return }
        let engine = engine
        engine.drain.drain(fd, while: context.channel.isActive) { payload, peer, _ in
            engine.relayFromPeer(allocation, from: peer, payload)
        }
        engine.queueToClient(allocation)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP port unreachable from a peer that is gone: the relay stays up.
        engine.logger.trace("relay socket error", metadata: ["error": "\(error)"])
    }
}
