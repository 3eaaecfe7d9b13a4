import NIOCore
import NIOHTTP1

/// Sits in front of NIO's upgrade handler for a connection's first request.
/// - An upgrade request we will refuse (a bad room name, another path, another protocol such as h2c,
///   signaling off) loses its `Upgrade` header here, so it is routed as a plain HTTP request and answered
///   (400, 404…). NIO's typed upgrade handler drops the request head when every upgrader declines, and the
///   client would get no answer at all.
/// - A WebSocket upgrade to a room that breaks RFC 6455 §4.2.1 (not GET, no valid `Sec-WebSocket-Key`,
///   a `Sec-WebSocket-Version` other than 13) is answered here — 400, or 426 with the version we speak
///   (§4.4) — and the connection closed; NIO's upgrader would fail it without a word.
final class RefusedUpgradeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let isWebSocketUpgrade: (HTTPRequestHead) -> Bool
    private let onRefused: () -> Void
    private var refusing = false

    /// `isWebSocketUpgrade`: a WebSocket upgrade to a path and room we serve. `onRefused`: counts an
    /// invalid handshake.
    init(isWebSocketUpgrade: @escaping (HTTPRequestHead) -> Bool, onRefused: @escaping () -> Void) {
        self.isWebSocketUpgrade = isWebSocketUpgrade
        self.onRefused = onRefused
    }

    /// Why a WebSocket upgrade request is not a valid opening handshake (RFC 6455 §4.2.1), nil if it is.
    static func handshakeProblem(_ head: HTTPRequestHead) -> (status: HTTPResponseStatus, message: String)? {
        guard head.method == .GET else { return (.badRequest, "a WebSocket upgrade is a GET request (RFC 6455 §4.1)") }
        guard head.version.major == 1, head.version.minor >= 1 else {
            return (.badRequest, "a WebSocket upgrade needs HTTP/1.1")
        }
        let versions = head.headers["sec-websocket-version"]
        guard versions.count == 1, versions[0].trimmingCharacters(in: .whitespaces) == "13" else {
            return (.upgradeRequired, "Sec-WebSocket-Version 13 is the version this server speaks")
        }
        let keys = head.headers["sec-websocket-key"]
        guard keys.count == 1, Self.isValidKey(keys[0].trimmingCharacters(in: .whitespaces)) else {
            return (.badRequest, "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)")
        }
        return nil
    }

    /// 16 bytes in base64: 22 characters of the alphabet and "==".
    static func isValidKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        return bytes[0..<22].allSatisfy { c in
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "+")
                || c == UInt8(ascii: "/")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refusing else { return }
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        if head.headers.contains(name: "upgrade") {
            if isWebSocketUpgrade(head), let problem = Self.handshakeProblem(head) {
                refusing = true
                onRefused()
                refuse(context, problem.status, problem.message)
                return
            }
            if !isWebSocketUpgrade(head) {
                head.headers.remove(name: "upgrade")
                context.fireChannelRead(wrapInboundOut(.head(head)))
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
        // Only the first request can be upgraded; after it the upgrade machinery is gone.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refuse(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ message: String) {
        let body = context.channel.allocator.buffer(string: #"{"error":"bad_websocket_handshake","message":"\#(message)"}"#)
        var headers = HTTPHeaders([("content-type", "application/json"), ("content-length", "\(body.readableBytes)"),
                                   ("connection", "close")])
        if status == .upgradeRequired { headers.add(name: "sec-websocket-version", value: "13") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            HTTPErrorResponder.lingeringClose(context)
        }
    }
}
