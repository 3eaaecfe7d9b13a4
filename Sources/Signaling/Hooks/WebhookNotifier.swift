import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The optional HTTP webhook: each join/leave is POSTed as JSON to `webhook.url`, signed with
/// `X-Webrtc-Signature: sha256=<hex HMAC-SHA256(secret, body)>` so the receiver can tell it came from
/// this server. A failure (connection, timeout, non-2xx) is logged and counted by the dispatcher.
struct WebhookNotifier: SignalingHooks {
    static let signatureHeader = "X-Webrtc-Signature"

    let settings: WebhookSettings
    let logger: Logger
    let stats: SignalingStats

    struct Body: Encodable {
        let event: String
        let room: String
        let peer_id: String
        let username: String
        let peers: [PeerInfo]
        let timestamp: Int
    }

    func peerJoined(_ event: RoomEvent) async throws { try await post(event) }
    func peerLeft(_ event: RoomEvent) async throws { try await post(event) }

    func post(_ event: RoomEvent) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = try encoder.encode(Body(event: event.kind.rawValue, room: event.room, peer_id: event.peer.peerID,
                                           username: event.peer.username, peers: event.others,
                                           timestamp: Int(Date().timeIntervalSince1970)))
        var headers = [("Content-Type", "application/json")]
        if !settings.secret.isEmpty {
            headers.append((Self.signatureHeader, "sha256=" + Self.signature(body: Array(body), secret: settings.secret)))
        }
        let status = try await HTTPPost.send(url: settings.url, body: Array(body), headers: headers, timeout: settings.timeout)
        guard (200..<300).contains(status) else { throw WebhookError.status(status) }
        stats.webhookDeliveries.add()
    }

    static func signature(body: [UInt8], secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined()
    }
}

enum WebhookError: Error, CustomStringConvertible {
    case status(Int)
    case timeout
    case badURL(String)
    case noResponse

    var description: String {
        switch self {
        case .status(let s): "HTTP status \(s)"
        case .timeout: "timed out"
        case .badURL(let u): "unsupported URL \(u)"
        case .noResponse: "connection closed before a response"
        }
    }
}

/// One HTTP/1.1 POST with `Connection: close` over NIO (http or https); returns the status code.
enum HTTPPost {
    static func send(url: URL, body: [UInt8], headers extra: [(String, String)], timeout: Duration) async throws -> Int {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", let host = url.host else {
            throw WebhookError.badURL(url.absoluteString)
        }
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        let tls = scheme == "https" ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        let group = MultiThreadedEventLoopGroup.singleton
        let loop = group.next()
        let promise = loop.makePromise(of: Int.self)
        let timeoutTask = loop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                            + timeout.components.attoseconds / 1_000_000_000)) {
            promise.fail(WebhookError.timeout)
        }
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(Int64(max(1, timeout.components.seconds))))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let ops = channel.pipeline.syncOperations
                        if let tls { try ops.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: host)) }
                        try ops.addHTTPClientHandlers()
                        try ops.addHandler(StatusHandler(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            timeoutTask.cancel()
            promise.fail(error)
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: url.path.isEmpty ? "/" : url.path + (url.query.map { "?" + $0 } ?? ""))
        head.headers.add(name: "Host", value: url.port.map { "\(host):\($0)" } ?? host)
        head.headers.add(name: "Content-Length", value: "\(body.count)")
        head.headers.add(name: "Connection", value: "close")
        head.headers.add(name: "User-Agent", value: "webrtc-server")
        for (k, v) in extra { head.headers.add(name: k, value: v) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            timeoutTask.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    final class StatusHandler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Int>
        var status: Int?

        init(promise: EventLoopPromise<Int>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): status = Int(h.status.code)
            case .body: break
            case .end:
                if let status { promise.succeed(status) } else { promise.fail(WebhookError.noResponse) }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(WebhookError.noResponse)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}
