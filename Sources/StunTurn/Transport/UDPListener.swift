import NIOCore

/// The UDP listener's only handler: framing is the datagram, so it hands each one to the engine, and
/// what the read batch gathered for peers to the sink when the batch ends. NIO reads the first datagram
/// of each wake-up, the handler the rest (the engine's `DatagramDrain`, recvmmsg on the descriptor);
/// answers and relayed data leave through the engine's `DatagramWriter` on the same descriptor.
final class UDPListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let engine: TurnEngine
    private let fd: CInt
    private var localAddress = TransportAddress(ip: IPAddress(ipv4: 0), port: 0)
    /// This listener as the sink writes from it; set once the handler is in its channel.
    private var socket: SocketHandle?

    init(engine: TurnEngine, fd: CInt) {
        self.engine = engine
        self.fd = fd
    }

    func handlerAdded(context: ChannelHandlerContext) {
        socket = SocketHandle.adopting(context.channel, fd: fd, port: 0)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        socket = nil  // the handle holds the channel, which holds this handler
    }

    func channelActive(context: ChannelHandlerContext) {
        if let a = context.localAddress.flatMap(TransportAddress.init) { localAddress = a }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard DatagramDrain.fits(envelope.data) else {
            engine.stats.malformedDropped.add()
            return
        }
        guard let client = TransportAddress(envelope.remoteAddress), let socket else { return }
        let ft = FiveTuple(client: client, server: localAddress, transport: .udp)
        engine.receive(envelope.data, fiveTuple: ft, path: .datagram(socket, envelope.remoteAddress))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let socket else { return }
        let engine = engine, core = engine.core, server = localAddress
        engine.drain.drain(fd, while: socket.isOpen) { datagram, client, raw in
            let ft = FiveTuple(client: client, server: server, transport: .udp)
            engine.receive(datagram, fiveTuple: ft, path: .datagram(socket, SocketAddress(drained: raw)))
        } batchEnd: {
            core.endOfReadBatch()
        }
        core.endOfReadBatch()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP errors surface here (ECONNREFUSED from a client that went away): nothing to close on a
        // shared UDP socket, so note and carry on.
        engine.logger.trace("udp listener error", metadata: ["error": "\(error)"])
    }
}
