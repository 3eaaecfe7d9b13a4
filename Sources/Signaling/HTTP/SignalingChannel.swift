import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import ServiceLifecycle

/// The child channel of the signaling port: HTTP/1.1 for Hummingbird's router, and the WebSocket upgrade
/// of `GET /websocket/:room`, after which the connection is served by `SignalingFrameHandler` on plain
/// SwiftNIO. (HummingbirdWebSocket's upgrade hands each connection to async tasks; on this path that cost
/// two thread hops per message — see BENCHMARKS.md — so the upgrade is done here with NIO's upgrader.)
struct SignalingChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let hub: SignalingHub
    let http1: HTTP1Channel.Configuration

    /// The room of `/websocket/<room>[?query]` if the name is valid; nil sends the request to the router
    /// (which answers 400 for a bad name).
    static func room(in uri: String, _ configuration: SignalingConfiguration) -> String? {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let prefix = "/websocket/"
        guard configuration.webSocketEnabled, path.hasPrefix(prefix) else { return nil }
        let name = path.dropFirst(prefix.count)
        return configuration.isValidRoomName(name) ? String(name) : nil
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let hub = self.hub
            let configuration = hub.configuration
            let maxFrameSize = max(1 << 20, 2 * configuration.maxMessageSize)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: maxFrameSize,
                enableAutomaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    channel.eventLoop.makeSucceededFuture(Self.room(in: head.uri, configuration) == nil ? nil : HTTPHeaders())
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        let room = Self.room(in: head.uri, configuration) ?? ""
                        let host = IceServers.hostname(fromAuthority: head.headers.first(name: "host") ?? "localhost")
                        let client = channel.remoteAddress?.addressBytes.map {
                            ForwardedFor.client(peer: $0, values: head.headers["x-forwarded-for"], trusted: configuration.trustedProxies)
                        }
                        // The frame handler reads and writes frames itself (WebSocketFraming), in front of
                        // NIO's frame codec: the socket's bytes (decrypted, under TLS) reach it first and its
                        // writes pass no WebSocket handler. NIO's decoder, just added by the upgrader and not
                        // yet fed a byte, comes out again; the encoder cannot be removed and stays, unused.
                        let sync = channel.pipeline.syncOperations
                        sync.removeHandler(
                            context: try sync.context(handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self), promise: nil)
                        // HTTP is over on this connection: the HTTP error responder goes with the HTTP codec.
                        sync.removeHandler(context: try sync.context(handlerType: HTTPErrorResponder.self), promise: nil)
                        let encoder = try sync.handler(type: WebSocketFrameEncoder.self)
                        try sync.addHandler(SignalingFrameHandler(hub: hub, room: room, requestHost: host, clientAddress: client,
                                                          maxFrameSize: maxFrameSize),
                                            position: .before(encoder))
                        return UpgradeResult.webSocket
                    }
                })
            let isWebSocketUpgrade: @Sendable (HTTPRequestHead) -> Bool = { head in
                head.headers["upgrade"].contains { $0.lowercased() == "websocket" } && Self.room(in: head.uri, configuration) != nil
            }
            let stats = hub.stats
            let http1 = self.http1
            let upgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            RequestDeadlineHandler(timeout: TimeAmount(configuration.httpTimeout)) {
                                stats.httpTimeouts.add()
                            })
                        try channel.pipeline.syncOperations.addHandler(LateUpgradeHandler(isWebSocketUpgrade: isWebSocketUpgrade) {
                            stats.lateUpgradesClosed.add()
                        })
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandlers(http1.additionalChannelHandlers())
                        // Idle keep-alive connections close after signaling.http_timeout (the first
                        // request's own deadline is RequestHeadDeadlineHandler's).
                        let idle = http1.idleTimeout.map { Duration($0) } ?? configuration.httpTimeout
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: idle > .zero ? idle : nil, logger: logger))
                        return UpgradeResult.notUpgraded(try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true)))
                    }
                })
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: upgradeConfiguration)
            pipeline.enablePipelining = false  // HTTP is pipelined by NIOAsyncChannel
            pipeline.enableErrorHandling = false  // Hummingbird answers errors
            pipeline.enableResponseHeaderValidation = false  // Swift HTTP Types validate already
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            let upgradeHandler = try channel.pipeline.syncOperations.handler(type: NIOTypedHTTPServerUpgradeHandler<UpgradeResult>.self)
            // Only a valid WebSocket upgrade to a valid room goes on to the upgrader.
            let refused = RefusedUpgradeHandler(isWebSocketUpgrade: isWebSocketUpgrade) {
                stats.badHTTPRequests.add()
            }
            try channel.pipeline.syncOperations.addHandler(refused, position: .before(upgradeHandler))
            let deadline = RequestHeadDeadlineHandler(timeout: TimeAmount(configuration.httpTimeout)) {
                stats.httpTimeouts.add()
            }
            try channel.pipeline.syncOperations.addHandler(deadline, position: .before(refused))
            try channel.pipeline.syncOperations.addHandler(HTTPErrorResponder {
                stats.badHTTPRequests.add()
            }, position: .before(deadline))
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            let result = try await withGracefulShutdownHandler {
                try await value.upgradeResult.get()
            } onGracefulShutdown: {
                // Browsers open spare connections that send nothing until they are needed; waiting for
                // their first request would hold a shutdown until signaling.http_timeout.
                let channel = value.channel
                channel.eventLoop.execute { RequestHeadDeadlineHandler.closeIfNoRequestYet(channel) }
            }
            switch result {
            case .webSocket:
                return  // the frame handler owns the connection from here
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            }
        } catch {
            logger.debug("signaling connection ended before a request", metadata: ["error": "\(error)"])
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with the signaling WebSocket upgrade of `GET /websocket/:room`; every other request goes to
    /// the application's router. An app that serves signaling from its own Hummingbird application passes
    /// this as its `server:`.
    public static func signaling(hub: SignalingHub, http1: HTTP1Channel.Configuration = .init()) -> HTTPServerBuilder {
        .init { responder in SignalingChannel(responder: responder, hub: hub, http1: http1) }
    }
}
