import NIOCore

/// The UDP listener's only handler: framing is the datagram, so it hands each one to the engine and
/// flushes the batch's writes when the read batch ends. NIO reads the first datagram of each wake-up,
/// the handler the rest (the engine's `DatagramDrain`, recvmmsg on descriptor `fd`); answers go out
/// through the channel, relayed data through the engine's `DatagramWriter` on the same descriptor.
final class UDPListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let engine: TurnEngine
    let fd: CInt
    var localAddress = TransportAddress(ip: IPAddress(ipv4: 0), port: 0)
    /// This listener as the relay path writes to it; set once the handler is in its channel.
    private var socket: WritableSocket?

    init(engine: TurnEngine, fd: CInt) {
        self.engine = engine
        self.fd = fd
    }

    func handlerAdded(context: ChannelHandlerContext) {
        socket = WritableSocket(channel: context.channel, fd: fd, writer: engine.writer)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        socket = nil  // the socket holds the channel, which holds this handler
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
        guard let client = TransportAddress(envelope.remoteAddress) else { return }
        let ft = FiveTuple(client: client, server: localAddress, transport: .udp)
        engine.receive(envelope.data, fiveTuple: ft, path: .datagram(socket!, envelope.remoteAddress))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let engine = engine, server = localAddress, socket = socket!
        engine.drain.drain(fd, while: context.channel.isActive) { datagram, client, raw in
            let ft = FiveTuple(client: client, server: server, transport: .udp)
            engine.receive(datagram, fiveTuple: ft, path: .datagram(socket, SocketAddress(drained: raw)))
        } batchEnd: {
            engine.queueDirtyRelays()
        }
        context.flush()
        engine.queueDirtyRelays()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP errors surface here (ECONNREFUSED from a client that went away): nothing to close on a
        // shared UDP socket, so note and carry on.
        engine.logger.trace("udp listener error", metadata: ["error": "\(error)"])
    }
}
