import Auth
import NIOCore
import NIOWebSocket

/// One upgraded WebSocket, on plain SwiftNIO: frames read from the socket's bytes (`WebSocketFraming`),
/// control frames (RFC 6455 §5.5), reassembly of fragmented messages bounded by `maxMessageSize`, and
/// the session fed on the connection's own event loop, with no task or thread hop per message. It is the
/// hub's `WebSocketOutput` for this connection: frames others send are written from its place in the
/// pipeline, next to the socket.
final class SignalingFrameHandler: ChannelInboundHandler, RemovableChannelHandler, WebSocketOutput {
    typealias InboundIn = ByteBuffer

    let hub: SignalingHub
    let room: String
    let requestHost: String
    /// The client's address (see `ForwardedFor`), nil for a non-IP socket.
    let clientAddress: [UInt8]?
    private(set) var connection: PeerConnection?
    private var session: SignalingSession?
    private var reader: WebSocketFraming.Reader
    private var buffer: [UInt8] = []
    private var isText = true
    private var size = 0
    /// `maxMessageSize` as it was when the current message started (read once, not per chunk).
    private var messageLimit = 0
    private var inMessage = false
    private var failed = false
    /// This handler's place in the pipeline while it is there.
    private var context: ChannelHandlerContext?

    init(hub: SignalingHub, room: String, requestHost: String, clientAddress: [UInt8]?, maxFrameSize: Int) {
        self.hub = hub
        self.room = room
        self.requestHost = requestHost
        self.clientAddress = clientAddress
        self.reader = WebSocketFraming.Reader(maxFrameSize: maxFrameSize)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let channel = context.channel
        let limit = hub.configuration.outboundBufferLimit
        try? channel.syncOptions?.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
        guard let conn = hub.open(source: clientAddress.flatMap(SourceKey.init(addressBytes:)), channel: channel) else {
            let refused = hub.refusedConnection(channel: channel)
            refused.attach(self)
            refused.close(finalEvent: ServerEvents.error(.serverFull, "the server is at its connection limit"),
                          reason: "server full", code: .unknown(1013))
            connection = refused
            return
        }
        conn.attach(self)
        connection = conn
        session = SignalingSession(hub: hub, connection: conn, room: room, requestHost: requestHost)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard connection != nil, !failed else { return }
        do {
            try reader.read(&bytes) { event in self.handle(event, context) }
        } catch {
            // After a protocol error nothing more is read from this connection (§7.1.7: fail it).
            failed = true
            connection?.close(finalEvent: nil, reason: error.reason, code: error.code)
        }
    }

    private func handle(_ event: WebSocketFraming.Event, _ context: ChannelHandlerContext) {
        guard let connection, !failed else { return }
        switch event {
        case .control(.connectionClose, var data):
            let code = data.readWebSocketErrorCode() ?? .normalClosure
            // A client closing with 1000 (a page closed), 1001 (navigated away) or no code (`close()`) is a
            // peer leaving; any other code is a failure, after which its session may be held for a resume.
            // (An answer to our own close frame decides nothing: the reason for that was ours.)
            if !connection.closeFrameSent, code == .normalClosure || code == .goingAway { connection.markLeaving() }
            if !connection.closeFrameSent {
                // The client closes: answer with its status code (§5.5.1), then end the TCP connection.
                connection.sendCloseFrame(code: code, reason: "")
            }
            context.channel.flush()
            context.close(promise: nil)
            failed = true  // nothing after a close frame is read
        case .control(.ping, let data):
            connection.write(.pong, data)
        case .control(_, _):  // pong
            connection.awaitingPong.store(false, ordering: .relaxed)
        case .dataFrame(let opcode, _):
            if opcode == .continuation {
                guard inMessage else { return protocolError("continuation without a message") }
            } else {
                guard !inMessage else { return protocolError("new message inside a fragmented one") }
                isText = opcode == .text
                buffer.removeAll(keepingCapacity: buffer.capacity <= 4096)
                size = 0
                messageLimit = hub.maxMessageSize
                inMessage = true
            }
        case .payload(let bytes, let key, let offset):
            size += bytes.count
            if size <= messageLimit, isText { WebSocketFraming.unmask(bytes, key: key, offset: offset, into: &buffer) }
        case .dataFrameEnd(let fin):
            guard fin else { return }
            inMessage = false
            guard session?.isClosing == false else { return }
            if size > messageLimit {
                session?.receivedTooLarge(size: size)
            } else if !isText {
                session?.receivedBinary()
            } else {
                session?.receivedText(buffer)
            }
        }
    }

    private func protocolError(_ reason: String) {
        failed = true
        connection?.close(finalEvent: nil, reason: reason, code: .protocolError)
    }

    /// The client closed its half of the TCP connection without a close frame (a killed browser, a crashed
    /// app): the WebSocket is over (RFC 6455 §7.1.5), so ours closes too and the room hears `left` now.
    /// (Hummingbird allows half-closure on its connections for HTTP's sake, so NIO reports the client's FIN
    /// as this event instead of closing; unhandled, the socket stayed half-open until a keepalive ping
    /// failed, or for ever with keepalive off.)
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            return context.fireUserInboundEventTriggered(event)
        }
        failed = true  // nothing more can be read
        context.channel.flush()
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        connection?.detach()  // the connection holds this handler, which holds the connection
        self.context = nil
    }

    func write(frame: ByteBuffer) { context?.write(NIOAny(frame), promise: nil) }

    func flush() { context?.flush() }

    func channelInactive(context: ChannelHandlerContext) {
        // Detached first: a message already on its way to this peer (from another loop, or the `left`
        // of others) is dropped instead of reaching NIO's frame encoder, which is still in the pipeline.
        connection?.detach()
        if let connection, connection.id != 0 { hub.closed(connection, peerID: session?.peerID) }
        connection = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
