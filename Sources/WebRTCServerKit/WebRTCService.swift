// What an embedding app names besides the service: lookups (Auth) and hooks (Signaling).
@_exported import Auth
import Cluster
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdCore
import JoinTokens
import Logging
import NIOCore
import NIOPosix
import ServerMetrics
import ServiceLifecycle
@_exported import Signaling
import StunTurn

/// What code adds to a configuration: the counterpart of the original's `auth_fun` and join/leave
/// callbacks, and where the signaling endpoint is served.
public struct ServerPlugins: Sendable {
    /// Asked after sessions, `auth.users`, `auth.secrets` and the lookups configuration names
    /// (`auth.sqlite`, `auth.http_lookup`), in this order. Any lookup turns the demo login off.
    public var lookups: [LookupChain.Link]
    /// Called after each `joined`/`left`, in order, off the signaling path (`SignalingHooks`).
    public var hooks: [any SignalingHooks]
    /// `.ownPort` (the default): the service listens on `signaling.port` itself. `.mounted`: it does not;
    /// the embedding app serves `/websocket/:room` from its own Hummingbird application by passing
    /// `WebRTCService.signalingServer` as the application's `server:`.
    public var signaling: SignalingPlacement

    public enum SignalingPlacement: Sendable { case ownPort, mounted }

    public init(lookups: [LookupChain.Link] = [], hooks: [any SignalingHooks] = [], signaling: SignalingPlacement = .ownPort) {
        self.lookups = lookups
        self.hooks = hooks
        self.signaling = signaling
    }
}

/// The whole server — TURN, signaling, the operations endpoints, the cluster link when configured — as
/// one ServiceLifecycle service, built from settings plus plug-ins. The `webrtc-server` executable is a
/// command-line front over it; an app adds it to its own `ServiceGroup`.
public final class WebRTCService: Service, Sendable {
    public static let version = "0.6.0"

    public let turn: TurnServer
    public let hub: SignalingHub
    public let credentials: CredentialStore
    public let cluster: ClusterNode?
    let services: [ServiceGroupConfiguration.ServiceConfiguration]
    let signaling: SignalingServer
    let reloader: ConfigurationReloader
    let backend: OperatorBackend
    let logger: Logger

    /// Builds every part; opens the configured lookups (a database that cannot be read throws).
    /// Nothing listens until `run()`.
    public init(settings: ServerSettings, plugins: ServerPlugins = .init(), logger: Logger) async throws {
        self.logger = logger
        let logLevel = LogLevelControl.process
        logLevel.current = settings.logLevel
        let demo = DemoLogin(pluggedLookups: !plugins.lookups.isEmpty)
        if demo.applies(to: settings) {
            let text = "nothing configured to log in with (auth.users, auth.secrets, a lookup or a token key): log in as '\(DemoLogin.username)' with password '\(demo.password)' "
                + "(made for this run; auth.demo_login false turns this off). Open \(demo.url(settings.signaling)) in two browser tabs."
            logger.notice("\(text)")
        }
        let links = try await settings.lookups.open(logger: logger) + plugins.lookups
        var lookups: LookupChain?
        if !links.isEmpty {
            lookups = LookupChain(links, settings: settings.lookups.chain)
            logger.info("password lookups: \(links.map(\.name).joined(separator: " → ")) (cached \(settings.lookups.chain.cacheTTL) s)")
        }
        // In a cluster, session credentials are derived from the cluster's secret: any instance accepts them.
        let credentials = CredentialStore(demo.credentials(for: settings), sessionSecret: settings.clusterSecret, lookups: lookups)
        credentials.throttle.update(settings.throttle)
        self.credentials = credentials
        let turn = TurnServer(configuration: settings.turn, credentials: credentials, group: MultiThreadedEventLoopGroup.singleton,
                              logger: logger)
        self.turn = turn
        // One lifecycle for a peer: when its signaling session ends, the TURN credentials minted for it
        // are revoked and its allocations released.
        turn.releaseAllocationsWhenRevoked(credentials.sessions)
        var running: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: turn)]
        let tokens = try await JWTJoinTokens(settings.tokens.verifier)
        // With signaling.enabled false the hub stays empty: its port serves only health and admin endpoints.
        let hub = SignalingHub(configuration: settings.signaling, credentials: credentials, tokens: tokens, hooks: plugins.hooks,
                               logger: logger)
        self.hub = hub
        let signalingLoops = SignalingServer.eventLoopGroup(threads: settings.signaling.threads)
        let node = settings.cluster.map { Self.clusterNode($0, settings: settings, hub: hub, credentials: credentials, turn: turn,
                                                          eventLoop: signalingLoops.next(), logger: logger) }
        cluster = node
        // First in the group, so stopped last: after signaling has handed its peers' departures over and
        // TURN has drained, it revokes their credentials cluster-wide and says goodbye.
        if let node { running.insert(.init(service: node), at: 0) }
        let exporter = PrometheusExporter(turn: turn, hub: hub, cluster: node, lookups: lookups)
        let backend = OperatorBackend(turn: turn, exporter: exporter, logLevel: logLevel, signaling: settings.signalingEnabled,
                                      cluster: node)
        self.backend = backend
        let turnHost = settings.clusterAdvertiseHost ?? settings.signaling.iceServers.host ?? "\(turn.relayedIP)"
        let turnTCP = settings.turn.tcp
        turn.whenListening { listeners in
            // Bound ports (with port 0 they are only known now).
            if let port = listeners.udp.first?.port { hub.iceServers.stunPort = port }
            if let port = listeners.tls.first?.port { hub.iceServers.turnsPort = port }
            let ice = hub.iceServers
            node?.setTurnEndpoint(TurnEndpoint(host: turnHost, port: ice.stunPort, tcp: turnTCP, tlsPort: ice.turnsPort))
            backend.markTurnReady()
        }
        signaling = SignalingServer(hub: hub, admin: backend, listens: plugins.signaling == .ownPort, logger: logger)
        running.append(.init(service: signaling))
        services = running
        reloader = ConfigurationReloader(credentials: credentials, tokens: tokens, demo: demo, turn: turn, hub: hub, logLevel: logLevel,
                                         logger: logger, current: LockedSettings(settings))
    }

    /// Runs every part until cancelled or shut down gracefully (TURN drains, signaling says goodbye).
    public func run() async throws {
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [], logger: logger))
        let credentials = self.credentials
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // Forget idle throttle entries once a minute.
            tasks.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(60))
                    credentials.throttle.sweep()
                }
            }
            try await withGracefulShutdownHandler {
                try await group.run()
            } onGracefulShutdown: {
                Task { await group.triggerGracefulShutdown() }
            }
            tasks.cancelAll()
        }
    }

    /// Applies `settings` to the running server: users and secrets, the auth throttle and lookup cache,
    /// limits, the API token and admin addresses, the log level; certificates are re-read from their
    /// files. Keys that need a restart are named in a warning. (`SIGHUP` in the executable.)
    public func reload(to settings: ServerSettings) { reloader.apply(settings) }

    /// Reads the settings again from where they were loaded (file, environment, flags) and applies them;
    /// an invalid configuration changes nothing and is logged.
    public func reload() { reloader.reloadFromOrigin() }

    /// With `.ownPort`: the signaling port once it listens (the bound one with `signaling.port` 0).
    public func signalingPort() async -> Int { await signaling.listeningPort() }

    /// For `.mounted`: the HTTP/1.1 server an embedding Hummingbird application runs with
    /// (`Application(router: yourRouter, server: service.signalingServer, …)`): `/websocket/:room` is
    /// upgraded and served by the signaling hub on plain SwiftNIO, every other request goes to the
    /// app's router.
    public var signalingServer: HTTPServerBuilder { .signaling(hub: hub) }

    /// Adds the operations endpoints (health, readiness, metrics, dashboard, admin) and the server API
    /// to an app's router, for `.mounted`.
    public func addOperationsRoutes(to router: Router<SignalingRequestContext>) {
        SignalingServer.addRoutes(to: router, hub: hub, admin: backend, signalingReady: { true })
    }

    /// This instance's part in the cluster of `c`.
    static func clusterNode(_ c: ClusterConfiguration, settings: ServerSettings, hub: SignalingHub, credentials: CredentialStore,
                            turn: TurnServer, eventLoop: any EventLoop, logger: Logger) -> ClusterNode {
        var c = c
        c.advert.address = "\(settings.clusterAdvertiseHost ?? settings.signaling.listenAddress):\(settings.signaling.port)"
        c.advert.signaling = settings.signalingEnabled
        return ClusterNode(configuration: c, hub: hub, credentials: credentials, eventLoop: eventLoop, logger: logger,
                           load: { (turn.stats.allocationsActive.value, turn.limits.maxAllocations) },
                           onFatal: { message in
                               FileHandle.standardError.write(Data("webrtc-server: \(message)\n".utf8))
                               Glibc.exit(2)
                           })
    }

    /// Raises the open-file limit to the hard limit, and warns when even that is short of what the
    /// configured connection and allocation limits can need.
    public static func raiseOpenFileLimit(for settings: ServerSettings, logger: Logger) {
        guard let change = FileDescriptorLimit.raiseToHard() else { return }
        if change.after != change.before {
            logger.info("open files limit raised to the hard limit", metadata: ["from": "\(change.before)", "to": "\(change.after)"])
        }
        // With signaling off, its port serves only health and admin requests: the spare 100 cover them.
        let connections = settings.signalingEnabled ? settings.signaling.maxConnections : nil
        if let needed = FileDescriptorLimit.needed(maxConnections: connections, maxAllocations: settings.turn.maxAllocations),
           change.after < needed {
            let (keys, them) = connections == nil
                ? ("turn.max_allocations", "it")
                : ("signaling.max_connections and turn.max_allocations", "those limits")
            logger.warning("""
                open files limit \(change.after) is below the \(needed) that \(keys) can need: \
                raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower \(them)
                """)
        }
    }

    /// The README's metrics table: every metric a full configuration (TURN, signaling, lookups, cluster) declares.
    public static func metricsTable() -> String {
        var logger = Logger(label: "metrics-table")
        logger.logLevel = .critical
        let group = MultiThreadedEventLoopGroup.singleton
        let credentials = CredentialStore(.init())
        let turn = TurnServer(configuration: TurnConfiguration(), credentials: credentials, group: group, logger: logger)
        let hub = SignalingHub(configuration: SignalingConfiguration(), credentials: credentials, logger: logger)
        let node = ClusterNode(configuration: ClusterConfiguration(nats: .init(servers: []), instanceID: "table",
                                                                   advert: InstanceAdvert(address: "", turn: nil)),
                               hub: hub, credentials: credentials, eventLoop: group.next(), logger: logger,
                               load: { (0, 0) }, onFatal: { _ in })
        let lookups = LookupChain([.init(name: "table", LookupFunction { _, _ in .unknown })])
        return Metric.markdownTable(PrometheusExporter.all(turn: turn, hub: hub, cluster: node, lookups: lookups, allocations: []))
    }
}
