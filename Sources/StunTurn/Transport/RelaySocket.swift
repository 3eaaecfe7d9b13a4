import NIOCore

/// The relay socket of one allocation: datagrams from peers go to the core's relay path (NIO reads the
/// first of each wake-up, the handler the rest from the socket's descriptor with the engine's
/// `DatagramDrain`); what a read batch relays to the client goes to the sink when the batch ends.
/// The allocation is the socket handle's (set while the allocation exists).
final class RelaySocketHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let engine: TurnEngine
    private let core: TurnCore
    private let socket: SocketHandle

    init(engine: TurnEngine, socket: SocketHandle) {
        self.engine = engine
        self.core = engine.core
        self.socket = socket
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard DatagramDrain.fits(envelope.data) else {
            core.stats.malformedDropped.add()
            return
        }
        guard let allocation = socket.allocation, let peer = TransportAddress(envelope.remoteAddress) else { return }
        core.relayFromPeer(allocation, from: peer, envelope.data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let allocation = socket.allocation else { return }
        let core = core
        engine.drain.drain(socket.fd, while: socket.isOpen) { payload, peer, _ in
            core.relayFromPeer(allocation, from: peer, payload)
        }
        core.endOfRelayBatch(allocation)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP port unreachable from a peer that is gone: the relay stays up.
        engine.logger.trace("relay socket error", metadata: ["error": "\(error)"])
    }
}
