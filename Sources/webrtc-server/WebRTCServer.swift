import ArgumentParser
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServiceLifecycle
import WebRTCServerKit

/// The command-line front over `WebRTCService` (WebRTCServerKit): flags and file → settings, SIGHUP →
/// reload, SIGTERM/SIGINT → graceful shutdown.
@main
struct WebRTCServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webrtc-server",
        abstract: "WebRTC signaling and STUN/TURN in one process.",
        discussion: """
            Settings come from embedded defaults, then --config FILE (YAML), then WEBRTC_SERVER_* environment \
            variables, then flags: --KEY VALUE or --KEY=VALUE with any key below (lists comma-separated, \
            auth.users as name=password pairs).

            """ + CommandLineText.keys,
        version: WebRTCService.version,
        subcommands: [CheckConfig.self])

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
            print(CommandLineText.exampleConfiguration, terminator: "")
            return
        }
        if printMetricsTable {
            print(WebRTCService.metricsTable(), terminator: "")
            return
        }
        let loaded = try Self.load(file: config, flags: settings)
        if printPorts {
            print(CommandLineText.listeningPorts(loaded))
            return
        }
        LiveLogLevel.bootstrap(loaded.logLevel)
        let logger = Logger(label: "webrtc-server")
        WebRTCService.raiseOpenFileLimit(for: loaded, logger: logger)
        let server: WebRTCService
        do {
            server = try await WebRTCService(settings: loaded, logger: logger)
        } catch {
            logger.critical("stopped on error: \(error)")
            throw ExitCode(1)
        }
        // SIGHUP: re-read the configuration and apply what can change while running.
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP)
        signal(SIGHUP, SIG_IGN)
        reload.setEventHandler {
            logger.info("SIGHUP: reloading")
            server.reload()
        }
        reload.resume()
        // Listeners are bound inside the services' run(), after ServiceGroup has taken over SIGTERM/SIGINT,
        // so a signal that arrives as soon as the "listening" line is printed still ends the process cleanly.
        let services = ServiceGroup(configuration: .init(
            services: [.init(service: server)],
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
        print(CommandLineText.effectiveSettings(loaded), terminator: "")
    }
}
