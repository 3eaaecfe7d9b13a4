import NIOCore
import NIOHTTP1

/// Deadlines for the requests on a connection after its first head (which `RequestHeadDeadlineHandler`
/// covers), each `timeout` long:
/// - a request's body must arrive in full within `timeout` of its head: a client announcing
///   `Content-Length: 100000` and dripping a byte every few seconds does not hold the connection;
/// - kept alive with nothing owed, the next request's head must arrive within `timeout` of the last
///   response's end, however slowly its bytes trickle in (the idle timeout only sees total silence).
/// Past a deadline the connection is closed; a body's deadline is counted as an HTTP timeout, the next
/// head's is not (it also ends plain idle keep-alive connections, which browsers leave open routinely).
/// A response being written (a long server-sent event stream among them) is never cut by either.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private let onExpiry: () -> Void
    private var deadline: Scheduled<Void>?
    /// Requests whose head has arrived and whose response has not ended yet.
    private var owed = 0
    private var inBody = false

    init(timeout: TimeAmount, onExpiry: @escaping () -> Void) {
        self.timeout = timeout
        self.onExpiry = onExpiry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            owed += 1
            inBody = true
            arm(context, counted: true)  // the body's deadline (cancelled at once by a request without one)
        case .end:
            inBody = false
            cancel()
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            owed = max(0, owed - 1)
            if owed == 0, !inBody { arm(context, counted: false) }  // the next head's deadline
        }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext, counted: Bool) {
        cancel()
        guard timeout > .zero else { return }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            deadline = nil
            if counted { onExpiry() }
            context.close(promise: nil)
        }
    }

    private func cancel() {
        deadline?.cancel()
        deadline = nil
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancel() }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }
}
