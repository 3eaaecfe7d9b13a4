import NIOCore
import NIOHTTP1

/// Sits in front of NIO's upgrade handler for a connection's first request. An upgrade request we will
/// refuse (a bad room name, another path, another protocol such as h2c, signaling off) loses its `Upgrade` header here, so it is routed
/// as a plain HTTP request and answered (400, 404…). NIO's typed upgrade handler drops the request head
/// when every upgrader declines, and the client would get no answer at all.
final class RefusedUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let accepts: (HTTPRequestHead) -> Bool

    init(accepts: @escaping (HTTPRequestHead) -> Bool) {
        self.accepts = accepts
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        if head.headers.contains(name: "upgrade"), !accepts(head) {
            head.headers.remove(name: "upgrade")
            context.fireChannelRead(wrapInboundOut(.head(head)))
        } else {
            context.fireChannelRead(data)
        }
        // Only the first request can be upgraded; after it the upgrade machinery is gone.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
