import Auth
import Hummingbird
import HummingbirdCore
import ServerTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The signaling half as a ServiceLifecycle service: the HTTP server (WebSocket route, server API,
/// example pages), the hook dispatcher and the once-a-second sweeper, started and stopped together.
public final class SignalingServer: Service, Sendable {
    public let hub: SignalingHub
    let admin: (any AdminBackend)?
    /// false: the port is the embedding app's (`HTTPServerBuilder.signaling(hub:)` in its application);
    /// `run()` then runs only the hooks and the sweeper.
    let listens: Bool
    let logger: Logger
    private let bound = Mutex<(port: Int?, waiters: [CheckedContinuation<Int, Never>])>((nil, []))

    public init(hub: SignalingHub, admin: (any AdminBackend)? = nil, listens: Bool = true, logger: Logger) {
        self.hub = hub
        self.admin = admin
        self.listens = listens
        self.logger = logger
    }

    public var configuration: SignalingConfiguration { hub.configuration }

    /// The bound port once listening (useful with port 0).
    public func listeningPort() async -> Int {
        await withCheckedContinuation { c in
            let ready = bound.withLock { s -> Int? in
                if let p = s.port { return p }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    func buildRouter() -> Router<SignalingRequestContext> {
        let http = Router(context: SignalingRequestContext.self)
        Self.addRoutes(to: http, hub: hub, admin: admin) { [self] in self.bound.withLock { $0.port != nil } }
        return http
    }

    /// The routes of the signaling port besides the WebSocket upgrade: health, admin, the server API,
    /// the example pages; an embedding app adds them to its own router.
    public static func addRoutes(to http: Router<SignalingRequestContext>, hub: SignalingHub, admin: (any AdminBackend)?,
                                 signalingReady: @escaping @Sendable () -> Bool) {
        let c = hub.configuration
        AdminRoutes.add(to: http, hub: hub, backend: admin, signalingReady: signalingReady)
        guard c.webSocketEnabled else {
            http.get("websocket/:room") { _, _ -> Response in
                throw HTTPError(.notFound, message: "signaling is off on this server (signaling.enabled: false)")
            }
            return
        }
        // Reached only when the request was not upgraded: a bad room name, or a plain HTTP GET.
        http.get("websocket/:room") { _, context -> Response in
            let room = try context.parameters.require("room")
            guard c.isValidRoomName(Substring(room)) else {
                throw HTTPError(.badRequest, message: "invalid room name: 1 to \(c.maxRoomNameLength) characters from A-Z a-z 0-9 - _ .")
            }
            throw HTTPError(.upgradeRequired, message: "this endpoint speaks WebSocket only")
        }
        ServerAPIRoutes.add(to: http, hub: hub)
        if let dir = c.staticDirectory { StaticPages.add(to: http, directory: dir) }
    }

    func serverBuilder() throws -> HTTPServerBuilder {
        let c = hub.configuration
        let hub = self.hub
        guard let cert = c.tlsCertificatePath, let key = c.tlsKeyPath else { return .signaling(hub: hub) }
        let context: @Sendable () -> NIOSSLContext
        if let supplied = c.tlsContext {
            context = supplied
        } else {
            let fixed = try ReloadableTLSContext.load(certificatePath: cert, keyPath: key)
            context = { fixed }
        }
        return HTTPServerBuilder { responder in
            CurrentTLSChannel(base: SignalingChannel(responder: responder, hub: hub, http1: .init()), context: context)
        }
    }

    /// The signaling port's own event loops: `threads`, or one per core for 0. A message whose sender
    /// and receiver are on different loops costs more CPU than one that stays on one thread, but with a
    /// loop per core a burst is spread over every core instead of queueing behind one (the figures:
    /// BENCHMARKS.md).
    var eventLoopGroupProvider: EventLoopGroupProvider { .shared(Self.eventLoopGroup(threads: hub.configuration.threads)) }

    /// The signaling port's event loops for `signaling.threads` (also where a cluster's NATS link runs, so
    /// that messages from other instances reach many of their recipients without a thread hop).
    public static func eventLoopGroup(threads: Int) -> MultiThreadedEventLoopGroup {
        let n = threads > 0 ? threads : max(1, System.coreCount)
        return groups.withLock { g in
            if let existing = g[n] { return existing }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: n)
            g[n] = group
            return group
        }
    }

    private static let groups = Mutex<[Int: MultiThreadedEventLoopGroup]>([:])

    /// Serves the port (unless the embedding app does), the hooks and the once-a-second sweep until a
    /// graceful shutdown, which says `shutdown` to every peer.
    public func run() async throws {
        let hub = self.hub
        let app = listens ? try makeApplication() : nil
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await hub.hooks.run() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    hub.sweep()
                }
            }
            if let app {
                try await withGracefulShutdownHandler {
                    try await app.run()
                } onGracefulShutdown: {
                    hub.shutdown()
                }
            } else {
                // The app's own server accepts the connections; returns on graceful shutdown or cancellation.
                try? await gracefulShutdown()
                hub.shutdown()
            }
            hub.hooks.finish()
            group.cancelAll()
        }
    }

    private func makeApplication() throws -> some ApplicationProtocol {
        let c = hub.configuration
        return Application(
            router: buildRouter(),
            server: try serverBuilder(),
            configuration: .init(address: .hostname(c.listenAddress, port: c.port), serverName: nil, backlog: 4096),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? c.port
                let waiters = bound.withLock { s in
                    s.port = port
                    defer { s.waiters = [] }
                    return s.waiters
                }
                for w in waiters { w.resume(returning: port) }
                var metadata: Logger.Metadata = ["address": "\(c.listenAddress)", "port": "\(port)", "tls": "\(c.tlsEnabled)"]
                if c.webSocketEnabled { metadata["websocket"] = "\(c.tlsEnabled ? "wss" : "ws")://HOST:\(port)/websocket/ROOM" }
                logger.info(c.webSocketEnabled ? "signaling listening"
                                               : "admin listening (signaling is off: health, welcome and admin endpoints only)",
                            metadata: metadata)
            },
            eventLoopGroupProvider: eventLoopGroupProvider,
            logger: logger)
    }
}
