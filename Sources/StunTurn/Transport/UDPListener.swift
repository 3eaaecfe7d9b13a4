import NIOCore

/// The UDP listener's only handler: framing is the datagram, so it hands each one to the engine and
/// flushes the batch's writes when the read batch ends (NIO reads them with recvmmsg, writes with sendmmsg).
final class UDPListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let engine: TurnEngine
    var localAddress = TransportAddress(ip: IPAddress(ipv4: 0), port: 0)

    init(engine: TurnEngine) { self.engine = engine }

    func channelActive(context: ChannelHandlerContext) {
        if let a = context.localAddress.flatMap(TransportAddress.init) { localAddress = a }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let client = TransportAddress(envelope.remoteAddress) else { return }
        let ft = FiveTuple(client: client, server: localAddress, transport: .udp)
        engine.receive(envelope.data, fiveTuple: ft, path: .datagram(context.channel, envelope.remoteAddress))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        engine.flushDirtyRelays()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // ICMP errors surface here (ECONNREFUSED from a client that went away): nothing to close on a
        // shared UDP socket, so note and carry on.
        engine.logger.trace("udp listener error", metadata: ["error": "\(error)"])
    }
}
