import NIOCore
import NIOWebSocket

/// One upgraded WebSocket, on plain SwiftNIO: control frames (RFC 6455 §5.5), reassembly of fragmented
/// messages bounded by `maxMessageSize`, and the session fed on the connection's own event loop, with no
/// task or thread hop per message.
final class SignalingFrameHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let hub: SignalingHub
    let room: String
    let requestHost: String
    private var connection: PeerConnection?
    private var session: SignalingSession?
    private var buffer: [UInt8] = []
    private var isText = true
    private var size = 0
    private var inMessage = false

    init(hub: SignalingHub, room: String, requestHost: String) {
        self.hub = hub
        self.room = room
        self.requestHost = requestHost
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let limit = hub.configuration.outboundBufferLimit
        try? channel.syncOptions?.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
        guard let conn = hub.open(remote: channel.remoteAddress.map { "\($0)" } ?? "unknown", channel: channel) else {
            let refused = PeerConnection(id: 0, remote: "", channel: channel, stats: hub.stats)
            refused.close(finalEvent: ServerEvents.error(.serverFull, "the server is at its connection limit"),
                          reason: "server full", code: .unknown(1013))
            connection = refused
            return
        }
        connection = conn
        session = SignalingSession(hub: hub, connection: conn, room: room, requestHost: requestHost)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let connection else { return }
        // RFC 6455 §5.1: a server MUST close the connection upon receiving an unmasked frame.
        guard frame.maskKey != nil else {
            protocolError(context, "client frames must be masked")
            return
        }
        switch frame.opcode {
        case .connectionClose:
            if !connection.closeFrameSent {
                // The client closes: answer with its status code (§5.5.1), then end the TCP connection.
                var data = frame.unmaskedData
                let code = data.readWebSocketErrorCode() ?? .normalClosure
                connection.sendCloseFrame(code: code, reason: "")
            }
            context.channel.flush()
            context.close(promise: nil)
        case .ping:
            connection.write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
        case .pong:
            connection.awaitingPong.store(false, ordering: .relaxed)
        case .text, .binary:
            guard !inMessage else { return protocolError(context, "new message inside a fragmented one") }
            isText = frame.opcode == .text
            buffer.removeAll(keepingCapacity: buffer.capacity <= 4096)
            size = 0
            inMessage = true
            append(frame)
        case .continuation:
            guard inMessage else { return protocolError(context, "continuation without a message") }
            append(frame)
        default:
            protocolError(context, "unknown opcode")
        }
    }

    /// Adds a data frame; a message over `maxMessageSize` is counted, not stored.
    private func append(_ frame: WebSocketFrame) {
        let max = hub.maxMessageSize
        size += frame.length
        if size <= max, isText { buffer.append(contentsOf: frame.unmaskedData.readableBytesView) }
        guard frame.fin else { return }
        inMessage = false
        guard var session, !session.isClosing else { return }
        if size > max {
            session.receivedTooLarge(size: size)
        } else if !isText {
            session.receivedBinary()
        } else {
            session.receivedText(buffer)
        }
        self.session = session
    }

    private func protocolError(_ context: ChannelHandlerContext, _ reason: String) {
        connection?.close(finalEvent: nil, reason: reason, code: .protocolError)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection, connection.id != 0 { hub.closed(connection, peerID: session?.peerID) }
        connection = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
