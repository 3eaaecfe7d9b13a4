import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// Per-request context for every route: the WebSocket upgrade slot and the client's address.
public struct SignalingRequestContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<SignalingRequestContext>
    public let remoteAddress: SocketAddress?
    /// The connection, so a WebSocket that ignores its close can be cut.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }
}
