import Auth
import Foundation
import Hummingbird

/// The server API for app backends under `/api/`, behind `Authorization: Bearer <api.token>`:
/// - `GET /api/rooms/{room}/peers` → `{"room","peers":[{peer_id,username}]}`
/// - `POST /api/rooms/{room}/publish` `{event, data}` → `{"delivered":N}`
/// - `POST /api/peers/{peer}/send` `{event, data}` → `{"delivered":1}`, 404 for an unknown peer
/// - `DELETE /api/peers/{peer}` → 204 (kicked), 404 for an unknown peer
enum ServerAPIRoutes {
    static let maxBody = 64 * 1024

    static func add(to router: Router<SignalingRequestContext>, hub: SignalingHub) {
        let api = router.group("api").add(middleware: BearerTokenMiddleware { hub.configuration.apiToken })
        api.get("rooms/:room/peers") { _, context -> Response in
            let room = try context.parameters.require("room")
            return json(RoomPeers(room: room, peers: hub.peers(in: room).sorted { $0.peerID < $1.peerID }))
        }
        api.post("rooms/:room/publish") { request, context -> Response in
            let room = try context.parameters.require("room")
            let (event, data) = try await readEventBody(request)
            return json(Delivered(delivered: hub.publish(room: room, event: event, dataJSON: data)))
        }
        api.post("peers/:peer/send") { request, context -> Response in
            let peer = try context.parameters.require("peer")
            let (event, data) = try await readEventBody(request)
            guard hub.send(to: peer, event: event, dataJSON: data) else {
                throw HTTPError(.notFound, message: "no peer \(peer)")
            }
            return json(Delivered(delivered: 1))
        }
        api.delete("peers/:peer") { _, context -> Response in
            let peer = try context.parameters.require("peer")
            guard hub.kick(peer) else { throw HTTPError(.notFound, message: "no peer \(peer)") }
            return Response(status: .noContent)
        }
    }

    /// `{event: string, data?: any}`; data is passed on as its JSON text.
    static func readEventBody(_ request: Request) async throws -> (String, String?) {
        let buffer = try await request.body.collect(upTo: maxBody)
        let envelope: JSONEnvelope
        do {
            envelope = try JSONEnvelope(bytes: Array(buffer.readableBytesView))
        } catch {
            throw HTTPError(.badRequest, message: "body must be a JSON object {\"event\": string, \"data\": any}")
        }
        guard let event = envelope.event, !event.isEmpty else {
            throw HTTPError(.badRequest, message: "\"event\" (a non-empty string) is required")
        }
        return (event, envelope.rawValue(of: "data"))
    }

    /// `value` as a JSON response (Codable; keys sorted, since Foundation's encoder on Linux keeps no
    /// member order of its own and the same answer should be the same bytes).
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(value)) ?? Data("null".utf8)
        var headers = extra
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// The bodies the server API and the admin endpoints answer with.
struct RoomPeers: Encodable {
    let room: String
    let peers: [PeerInfo]
}

struct Delivered: Encodable {
    let delivered: Int
}

struct APIError: Encodable {
    let error: String
    var message: String?
}

/// 401 unless `Authorization: Bearer <token>` matches (`BearerToken`). An empty configured token refuses
/// everything: the API is off until a token is set.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Read per request: the token can be changed by a configuration reload.
    let currentToken: @Sendable () -> String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard BearerToken.matches(BearerToken.from(request.headers), configured: currentToken()) else {
            return ServerAPIRoutes.json(APIError(error: "unauthorized"), status: .unauthorized, headers: [.wwwAuthenticate: "Bearer"])
        }
        return try await next(request, context)
    }
}
