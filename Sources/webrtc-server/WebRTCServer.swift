import ArgumentParser
import Auth
import Dispatch
import Foundation
import Logging
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
            .joined(separator: "\n"))

    @Option(name: .long, help: "YAML configuration file.")
    var config: String?

    @Flag(name: .customLong("print-ports"),
          help: "Print the ports this configuration listens on (protocol, port or range, purpose) and exit; firewall.sh reads this.")
    var printPorts = false

    @Argument(parsing: .allUnrecognized, help: .hidden)
    var settings: [String] = []

    func run() async throws {
        let loaded: ServerSettings
        do {
            loaded = try ServerSettings.load(file: config, environment: ProcessInfo.processInfo.environment, flags: settings)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("webrtc-server: invalid configuration: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if printPorts {
            print(loaded.listeningPorts.map { "\($0.proto) \($0.port) \($0.purpose)" }.joined(separator: "\n"))
            return
        }
        let level = loaded.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "webrtc-server")
        let credentials = CredentialStore(loaded.credentials)
        let group = MultiThreadedEventLoopGroup.singleton
        let turn = TurnServer(configuration: loaded.turn, credentials: credentials, group: group, logger: logger)
        // One lifecycle for a peer: when its signaling session ends, the TURN credentials minted for it
        // are revoked and its allocations released.
        turn.releaseAllocationsWhenRevoked(credentials.sessions)
        var running: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: turn)]
        if loaded.signalingEnabled {
            let hub = SignalingHub(configuration: loaded.signaling, credentials: credentials, logger: logger)
            let tlsConfigured = loaded.turn.tls != nil
            turn.onListening = { addresses in
                // Bound ports (with port 0 they are only known now): UDP, TCP, then TLS per address.
                if let port = addresses.first?.port { hub.iceServers.stunPort = port }
                if tlsConfigured, let port = addresses.last?.port { hub.iceServers.turnsPort = port }
            }
            running.append(.init(service: SignalingServer(hub: hub, logger: logger)))
        }
        // SIGHUP: re-read the TLS certificate and key (existing connections keep theirs).
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP)
        signal(SIGHUP, SIG_IGN)
        reload.setEventHandler {
            logger.info("SIGHUP: reloading")
            loaded.turn.tls?.reload(logger: logger)
        }
        reload.resume()
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
}
