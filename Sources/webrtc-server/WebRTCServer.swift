import ArgumentParser
import Auth
import Cluster
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServerMetrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Signaling
import StunTurn

/// The composition root: configuration → services → ServiceLifecycle. No protocol logic here.
@main
struct WebRTCServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webrtc-server",
        abstract: "WebRTC signaling and STUN/TURN in one process.",
        discussion: """
            Settings come from embedded defaults, then --config FILE (YAML), then WEBRTC_SERVER_* environment \
            variables, then flags: --KEY VALUE or --KEY=VALUE with any key below (lists comma-separated, \
            auth.users as name=password pairs).

            """ + ConfigKeys.all.map { "  --\($0.name) (\($0.environmentName), default '\($0.defaultValue)'): \($0.help)" }
            .joined(separator: "\n"),
        version: WebRTCServer.version,
        subcommands: [CheckConfig.self])

    static let version = "0.5.0"

    /// `check-config` is dispatched here: the root command passes unrecognised arguments on as
    /// settings, which would otherwise swallow the subcommand's name.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == CheckConfig.configuration.commandName {
            await CheckConfig.main(Array(arguments.dropFirst()))
        } else {
            await Self.main(arguments)
        }
    }

    @Option(name: .long, help: "YAML configuration file.")
    var config: String?

    @Flag(name: .customLong("print-ports"),
          help: "Print the ports this configuration listens on (protocol, port or range, purpose) and exit; firewall.sh reads this.")
    var printPorts = false

    @Flag(name: .customLong("print-example-config"), help: .hidden)
    var printExampleConfig = false

    @Flag(name: .customLong("print-metrics-table"), help: .hidden)
    var printMetricsTable = false

    @Argument(parsing: .allUnrecognized, help: .hidden)
    var settings: [String] = []

    func run() async throws {
        if printExampleConfig {
            print(ExampleConfiguration.yaml, terminator: "")
            return
        }
        if printMetricsTable {
            print(Self.metricsTable(), terminator: "")
            return
        }
        let loaded = try Self.load(file: config, flags: settings)
        if printPorts {
            print(loaded.listeningPorts.map { "\($0.proto) \($0.port) \($0.purpose)" }.joined(separator: "\n"))
            return
        }
        let logLevel = LogLevelControl(loaded.logLevel)
        logLevel.bootstrap()
        let logger = Logger(label: "webrtc-server")
        Self.raiseOpenFileLimit(for: loaded, logger: logger)
        let demo = DemoLogin()
        if DemoLogin.applies(to: loaded) {
            let text = "no auth.users, auth.secrets or lookup configured: log in as '\(DemoLogin.username)' with password '\(demo.password)' "
                + "(made for this run; auth.demo_login false turns this off). Open \(demo.url(loaded.signaling)) in two browser tabs."
            logger.notice("\(text)")
        }
        // In a cluster, session credentials are derived from the cluster's secret: any instance accepts them.
        let lookups = try await loaded.lookups.makeChain(logger: logger)
        let credentials = CredentialStore(demo.credentials(for: loaded), sessionSecret: loaded.clusterSecret, lookups: lookups)
        credentials.throttle.update(loaded.throttle)
        let group = MultiThreadedEventLoopGroup.singleton
        let turn = TurnServer(configuration: loaded.turn, credentials: credentials, group: group, logger: logger)
        // One lifecycle for a peer: when its signaling session ends, the TURN credentials minted for it
        // are revoked and its allocations released.
        turn.releaseAllocationsWhenRevoked(credentials.sessions)
        var running: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: turn)]
        // With signaling.enabled false the hub stays empty: its port serves only health and admin endpoints.
        let hub = SignalingHub(configuration: loaded.signaling, credentials: credentials, logger: logger)
        let signalingLoops = SignalingServer.eventLoopGroup(threads: loaded.signaling.threads)
        let node = loaded.cluster.map { Self.clusterNode($0, settings: loaded, hub: hub, credentials: credentials, turn: turn,
                                                          eventLoop: signalingLoops.next(), logger: logger) }
        // First in the group, so stopped last: after signaling has handed its peers' departures over and
        // TURN has drained, it revokes their credentials cluster-wide and says goodbye.
        if let node { running.insert(.init(service: node), at: 0) }
        let exporter = PrometheusExporter(turn: turn, hub: hub, cluster: node, lookups: lookups)
        let backend = OperatorBackend(turn: turn, exporter: exporter, logLevel: logLevel, signaling: loaded.signalingEnabled,
                                      cluster: node)
        let turnHost = loaded.clusterAdvertiseHost ?? loaded.signaling.iceServers.host ?? "\(turn.relayedIP)"
        let turnTCP = loaded.turn.tcp
        turn.whenListening { listeners in
            // Bound ports (with port 0 they are only known now).
            if let port = listeners.udp.first?.port { hub.iceServers.stunPort = port }
            if let port = listeners.tls.first?.port { hub.iceServers.turnsPort = port }
            let ice = hub.iceServers
            node?.setTurnEndpoint(TurnEndpoint(host: turnHost, port: ice.stunPort, tcp: turnTCP, tlsPort: ice.turnsPort))
            backend.markTurnReady()
        }
        running.append(.init(service: SignalingServer(hub: hub, admin: backend, logger: logger)))
        // SIGHUP: re-read the configuration and apply what can change while running.
        let reloader = ConfigurationReloader(file: config, flags: settings, credentials: credentials, demo: demo, turn: turn, hub: hub,
                                             logLevel: logLevel, logger: logger, current: LockedSettings(loaded))
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP)
        signal(SIGHUP, SIG_IGN)
        reload.setEventHandler {
            logger.info("SIGHUP: reloading")
            reloader.reload()
        }
        reload.resume()
        // Forget idle throttle entries once a minute.
        let throttleSweep = DispatchSource.makeTimerSource()
        throttleSweep.schedule(deadline: .now() + 60, repeating: 60)
        throttleSweep.setEventHandler { credentials.throttle.sweep() }
        throttleSweep.resume()
        // Listeners are bound inside the services' run(), after ServiceGroup has taken over SIGTERM/SIGINT,
        // so a signal that arrives as soon as the "listening" line is printed still ends the process cleanly.
        let services = ServiceGroup(configuration: .init(
            services: running,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await services.run()
        } catch {
            logger.critical("stopped on error: \(error)")
            throw ExitCode(1)
        }
        logger.info("stopped")
    }

    /// The README's metrics table: every metric a full configuration (TURN, signaling, lookups, cluster) declares.
    static func metricsTable() -> String {
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
    static func raiseOpenFileLimit(for settings: ServerSettings, logger: Logger) {
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

    /// The layered configuration, or exit 2 with one line naming the bad setting.
    static func load(file: String?, flags: [String]) throws -> ServerSettings {
        do {
            return try ServerSettings.load(file: file, environment: ProcessInfo.processInfo.environment, flags: flags)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("webrtc-server: invalid configuration: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// `webrtc-server check-config [--config FILE] [--KEY VALUE…]`: validates the configuration as the server
/// would read it and prints the effective value of every key, secrets masked. Exit 0 valid, 2 invalid.
struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration and print the effective settings (secrets masked).")

    @Option(name: .long, help: "YAML configuration file.")
    var config: String?

    @Argument(parsing: .allUnrecognized, help: .hidden)
    var settings: [String] = []

    func run() async throws {
        let loaded = try WebRTCServer.load(file: config, flags: settings)
        print("# configuration is valid; effective settings (defaults < file < environment < flags):")
        for key in ConfigKeys.all {
            var value = loaded.raw[key.name]
            // URLs may carry credentials: shown without them.
            if key.name == ConfigKey.clusterNats.name, case .list(let urls)? = value { value = .list(urls.map(ServerSettings.maskingCredentials)) }
            print("\(key.name): \(ExampleConfiguration.render(value, masked: key.secret))")
        }
    }
}
