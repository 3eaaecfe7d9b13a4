import NIOCore
import NIOHTTP1

/// Closes a connection to the signaling port that has not delivered a complete request head within
/// `timeout` of its accept: a client that connects and sends nothing, trickles its head a byte at a time,
/// or never finishes its TLS handshake does not hold a descriptor for ever. The handler leaves the
/// pipeline with the first head. After that, Hummingbird's idle timeout (the same setting) closes idle
/// keep-alive connections, and an upgraded WebSocket has its own deadlines (auth_timeout, keepalive,
/// idle_timeout).
final class RequestHeadDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart

    private let timeout: TimeAmount
    private let onExpiry: () -> Void
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, onExpiry: @escaping () -> Void) {
        self.timeout = timeout
        self.onExpiry = onExpiry
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard deadline == nil, timeout > .zero else { return }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            deadline = nil
            onExpiry()
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        deadline?.cancel()
        deadline = nil
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    /// On a graceful shutdown: closes `channel` if it has not delivered a request head yet (this handler
    /// is still in its pipeline); a request already under way is left to finish. On the channel's loop.
    static func closeIfNoRequestYet(_ channel: any Channel) {
        guard (try? channel.pipeline.syncOperations.handler(type: RequestHeadDeadlineHandler.self)) != nil else { return }
        channel.close(promise: nil)
    }
}
