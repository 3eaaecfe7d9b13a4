import AsyncHTTPClient
import Auth
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat

/// The optional HTTP webhook: each join/leave is POSTed as JSON to `webhook.url`, signed with
/// `X-Webrtc-Signature: sha256=<hex HMAC-SHA256(secret, body)>` (`RequestSignature`) so the receiver can tell it came from
/// this server. A failure (connection, timeout, non-2xx) is logged and counted by the dispatcher.
/// Sent with async-http-client's shared client (pooled connections, http and https).
struct WebhookNotifier: SignalingHooks {
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
        var request = HTTPClientRequest(url: settings.url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "webrtc-server")
        if !settings.secret.isEmpty {
            request.headers.add(name: RequestSignature.header, value: RequestSignature.value(body: Array(body), secret: settings.secret))
        }
        request.body = .bytes(ByteBuffer(data: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(Int64(settings.timeout / .nanoseconds(1))))
        // The receiver's answer is not read; a bounded read lets the connection go back to the pool.
        _ = try? await response.body.collect(upTo: 16 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else { throw WebhookError.status(Int(response.status.code)) }
        stats.webhookDeliveries.add()
    }

}

enum WebhookError: Error, CustomStringConvertible {
    case status(Int)

    var description: String {
        switch self {
        case .status(let s): "HTTP status \(s)"
        }
    }
}
