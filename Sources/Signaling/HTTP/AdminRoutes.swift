import Auth
import Foundation
import Hummingbird
import NIOCore
import ServerMetrics

/// What the operator endpoints need from outside the signaling half (the TURN half, metrics, logging),
/// supplied by the executable that composes both.
public protocol AdminBackend: Sendable {
    /// Every metric in the Prometheus text format.
    func metrics() async -> String
    /// The TURN half for `/api/stats`: counters and active allocations.
    func turnStatus() async -> any Encodable & Sendable
    /// True once every TURN listener is bound.
    var turnReady: Bool { get }
    var logLevel: String { get }
    /// Changes the log level; false for an unknown level name.
    func setLogLevel(_ name: String) -> Bool
    var version: String { get }
    var features: [String] { get }
    /// The cluster for `/api/stats`: its instances and link counters; nil on a single box.
    func clusterStatus() -> (any Encodable & Sendable)?
}

extension AdminBackend {
    public func clusterStatus() -> (any Encodable & Sendable)? { nil }
}

/// Operator endpoints on the signaling port:
/// - `GET /healthz` (alive) and `GET /readyz` (every listener bound: 200, else 503), open to all;
/// - `GET /api/v1/welcome` → `{"name","version","features"}`, open to all;
/// - admin, from `admin.allow` addresses or with the API token: `GET /metrics`, `GET /api/stats`,
///   `GET|PUT /api/v1/log_level`, `GET /dashboard` and its live feed `GET /dashboard/events`.
enum AdminRoutes {
    static func add(to router: Router<SignalingRequestContext>, hub: SignalingHub, backend: (any AdminBackend)?,
                    signalingReady: @escaping @Sendable () -> Bool) {
        router.get("healthz") { _, _ in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            // In a cluster, an instance whose NATS link is down serves its own peers but is not ready: a
            // load balancer should send new peers where they can reach the whole room.
            let linked = hub.isClusterLinked
            let ready = signalingReady() && (backend?.turnReady ?? true) && !hub.isShuttingDown && linked
            let text = ready ? "ready\n" : linked ? "not ready\n" : "not ready: cluster link down\n"
            return Response(status: ready ? .ok : .serviceUnavailable,
                            headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("api/v1/welcome") { _, _ -> Response in
            ServerAPIRoutes.json(Welcome(name: "webrtc-server", version: backend?.version ?? "dev",
                                         features: backend?.features ?? ["signaling"]))
        }
        let admin = router.group().add(middleware: AdminAccessMiddleware(hub: hub))
        admin.get("metrics") { _, _ -> Response in
            let text = await backend?.metrics() ?? ""
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        admin.get("api/stats") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: await statsJSON(hub: hub, backend: backend))))
        }
        admin.get("api/v1/log_level") { _, _ -> Response in
            ServerAPIRoutes.json(LogLevel(level: backend?.logLevel ?? "info"))
        }
        admin.put("api/v1/log_level") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1024)
            let text = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
            // `{"level":"debug"}` or the bare name.
            let name = (try? JSONDecoder().decode(LogLevel.self, from: Data(text.utf8)))?.level ?? text
            guard let backend, backend.setLogLevel(name) else {
                throw HTTPError(.badRequest, message: "unknown log level '\(name)': trace, debug, info, notice, warning, error or critical")
            }
            return ServerAPIRoutes.json(LogLevel(level: backend.logLevel))
        }
        admin.get("dashboard") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        // Server-sent events: the same JSON as /api/stats once a second, until the client goes away, the
        // server shuts down or an hour has passed (EventSource reconnects by itself). At most
        // admin.max_event_streams at once (503 beyond), all sharing one snapshot a second.
        let feed = StatsFeed { await statsJSON(hub: hub, backend: backend) }
        admin.get("dashboard/events") { _, _ -> Response in
            guard let subscription = feed.subscribe(limit: hub.configuration.maxEventStreams) else {
                return ServerAPIRoutes.json(APIError(error: "too_many_streams", message: "admin.max_event_streams dashboard feeds are open"),
                                            status: .serviceUnavailable, headers: [.retryAfter: "10"])
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
                            body: .init { writer in
                                let end = ContinuousClock.now + .seconds(3600)
                                while !hub.isShuttingDown, ContinuousClock.now < end {
                                    let json = await subscription.next()
                                    try await writer.write(ByteBuffer(string: "data: \(json)\n\n"))
                                    try await Task.sleep(for: .seconds(1))
                                }
                                try await writer.finish(nil)
                            })
        }
    }

    /// Rooms shown in full in /api/stats (the counts are always complete).
    static let maxRoomsListed = 200

    static func statsJSON(hub: SignalingHub, backend: (any AdminBackend)?) async -> String {
        let rooms = hub.rooms().sorted { $0.key < $1.key }.prefix(maxRoomsListed).map { room, _ in
            RoomPeers(room: room, peers: hub.peers(in: room).sorted { $0.peerID < $1.peerID })
        }
        let stats = Stats(time: Int(Date().timeIntervalSince1970), signaling: Metric.jsonValues(hub.metrics), rooms: Array(rooms),
                          turn: await backend?.turnStatus(), cluster: backend?.clusterStatus())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(stats)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }

    /// `/api/stats`.
    struct Stats: Encodable {
        let time: Int
        let signaling: [String: Metric.JSONValue]
        let rooms: [RoomPeers]
        let turn: (any Encodable & Sendable)?
        let cluster: (any Encodable & Sendable)?

        enum CodingKeys: String, CodingKey { case time, signaling, rooms, turn, cluster }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(time, forKey: .time)
            try c.encode(signaling, forKey: .signaling)
            try c.encode(rooms, forKey: .rooms)
            if let turn { try c.encode(turn, forKey: .turn) } else { try c.encodeNil(forKey: .turn) }
            if let cluster { try c.encode(cluster, forKey: .cluster) } else { try c.encodeNil(forKey: .cluster) }
        }
    }

    struct Welcome: Encodable {
        let name: String
        let version: String
        let features: [String]
    }

    struct LogLevel: Codable {
        let level: String
    }
}

/// The admin access rule: the API token (`Authorization: Bearer`; `?token=` only on the dashboard and its
/// feed, which a browser opens without headers — elsewhere a token in the URL would end up in logs), or a
/// direct request from an `admin.allow` address. 403 otherwise.
struct AdminAccessMiddleware: RouterMiddleware {
    typealias Context = SignalingRequestContext
    let hub: SignalingHub

    static let pathsTakingTokenInURL: Set<String> = ["/dashboard", "/dashboard/events"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let c = hub.configuration
        let given = BearerToken.from(request.headers)
            ?? (Self.pathsTakingTokenInURL.contains(request.uri.path) ? request.uri.queryParameters.get("token") : nil)
        let tokenOK = BearerToken.matches(given, configured: c.apiToken)
        let proxied = request.headers[.init("X-Forwarded-For")!] != nil || request.headers[.init("Forwarded")!] != nil
        let addressOK = !proxied && (context.remoteAddress?.addressBytes.map(c.adminAllowed) ?? false)
        guard tokenOK || addressOK else {
            return ServerAPIRoutes.json(APIError(error: "forbidden", message: "admin endpoints answer admin.allow addresses or the API token"),
                                        status: .forbidden)
        }
        return try await next(request, context)
    }
}
