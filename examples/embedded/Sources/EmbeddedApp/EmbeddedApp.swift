import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import WebRTCServerKit

/// An app with webrtc-server inside: its own users decide logins (for signaling and TURN alike, as the
/// original's auth_fun), its own hook sees who joins, and its own Hummingbird application serves its
/// page next to the signaling endpoint, on one port.
@main
struct EmbeddedApp {
    /// The app's own users: in a real app, its database.
    static let users = ["alice": "wonderland", "bob": "the-builder"]

    static func main() async throws {
        LiveLogLevel.bootstrap(.info)
        let logger = Logger(label: "embedded-app")
        // The server's settings as it reads them (defaults < WEBRTC_SERVER_* environment < --key value
        // flags), after the app's own two options.
        var arguments = Array(CommandLine.arguments.dropFirst())
        let appPort = Int(take("--app-port", from: &arguments) ?? "8080") ?? 8080
        let pages = URL(fileURLWithPath: take("--pages", from: &arguments) ?? "../simple", isDirectory: true)
        let settings = try ServerSettings.load(file: nil, environment: ProcessInfo.processInfo.environment, flags: arguments)

        let lookup = LookupFunction { username, _ in
            users[username].map { .found([.password($0)]) } ?? .unknown
        }
        let attendance = Attendance()
        let server = try await WebRTCService(
            settings: settings,
            plugins: ServerPlugins(lookups: [.init(name: "app-users", lookup)], hooks: [attendance], signaling: .mounted),
            logger: logger)

        // The app's router: its page, what its hook saw, the call page (examples/simple), and the server's
        // health, metrics and API routes. `/websocket/:room` never reaches it: `server.signalingServer`
        // upgrades it.
        let router = Router(context: SignalingRequestContext.self)
        router.get("/") { _, _ in
            let seen = attendance.all.map { "<li>\($0.peer.username) \($0.kind.rawValue) \($0.room)</li>" }.joined()
            return HTML("<h1>An app with webrtc-server inside</h1><p><a href=\"/room/lobby\">call in the lobby</a></p><ul>\(seen)</ul>")
        }
        router.get("joins") { _, _ in Seen(events: attendance.all) }
        router.get("room/:name") { _, _ in try page("index.html", in: pages) }
        router.get("static/:file") { _, context in try page(try context.parameters.require("file"), in: pages) }
        server.addOperationsRoutes(to: router)

        let app = Application(
            router: router,
            server: server.signalingServer,
            configuration: .init(address: .hostname("127.0.0.1", port: appPort)),
            onServerRunning: { channel in logger.info("app listening", metadata: ["port": "\(channel.localAddress?.port ?? 0)"]) },
            logger: logger)
        try await ServiceGroup(services: [server, app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
    }

    /// Removes `--name VALUE` from `arguments` and returns VALUE.
    static func take(_ name: String, from arguments: inout [String]) -> String? {
        guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
        defer { arguments.removeSubrange(i...(i + 1)) }
        return arguments[i + 1]
    }

    static func page(_ name: String, in folder: URL) throws -> Response {
        guard ["index.html", "main.js"].contains(name), let data = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path)
        else { throw HTTPError(.notFound) }
        let type = name.hasSuffix(".js") ? "text/javascript" : "text/html; charset=utf-8"
        return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// The app's join/leave hook: it keeps who came and went; its page and `/joins` show them.
final class Attendance: SignalingHooks {
    private let events = Mutex<[RoomEvent]>([])
    func peerJoined(_ event: RoomEvent) async throws { events.withLock { $0.append(event) } }
    func peerLeft(_ event: RoomEvent) async throws { events.withLock { $0.append(event) } }
    var all: [RoomEvent] { events.withLock { $0 } }
}

struct Seen: ResponseEncodable {
    let events: [RoomEvent]
}

struct HTML: ResponseGenerator {
    let text: String
    init(_ text: String) { self.text = text }
    func response(from request: Request, context: some RequestContext) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
