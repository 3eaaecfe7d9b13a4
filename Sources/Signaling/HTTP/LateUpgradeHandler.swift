import NIOCore
import NIOHTTP1

/// A WebSocket upgrade that arrives as a later request on a kept-alive connection. NIO's upgrader serves
/// only a connection's first request, and reverse proxies that pool their upstream connections (nginx
/// with `keepalive`, Go's reverse proxies) send an upgrade on whatever idle connection they hold. Answering
/// it as plain HTTP would fail the browser's WebSocket with 426. Instead the connection is closed without
/// an answer: such proxies retry a request whose pooled connection closed before any response, on a new
/// connection, where the upgrade is the first request. Only done while no earlier response is still
/// owed, so a pipelined response is never cut; otherwise the request goes on to the router.
final class LateUpgradeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let isWebSocketUpgrade: (HTTPRequestHead) -> Bool
    private let onClose: () -> Void
    /// Requests read whose response has not been written in full yet.
    private var owed = 0
    private var closing = false

    init(isWebSocketUpgrade: @escaping (HTTPRequestHead) -> Bool, onClose: @escaping () -> Void) {
        self.isWebSocketUpgrade = isWebSocketUpgrade
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        if case .head(let head) = unwrapInboundIn(data) {
            if owed == 0, isWebSocketUpgrade(head) {
                closing = true
                onClose()
                context.close(promise: nil)
                return
            }
            owed += 1
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { owed = max(0, owed - 1) }
        context.write(data, promise: promise)
    }
}
