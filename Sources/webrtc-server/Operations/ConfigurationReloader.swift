import Auth
import ServerTLS
import Foundation
import Synchronization
import Logging
import Signaling
import StunTurn

/// SIGHUP: reads the configuration again from the same file, environment and flags, and applies what
/// can change while running — users and secrets, the auth throttle, limits, the API token and admin
/// addresses, the log level, the TURN TLS certificate. An invalid configuration changes nothing and is
/// reported in one log line; changed keys that need a restart are named.
struct ConfigurationReloader: Sendable {
    let file: String?
    let flags: [String]
    let credentials: CredentialStore
    let demo: DemoLogin
    let turn: TurnServer
    let hub: SignalingHub
    let logLevel: LogLevelControl
    let logger: Logger
    /// The settings in force (read and replaced on the reload queue only).
    let current: LockedSettings

    func reload() {
        // The certificate files first, on their own: renewed in place (certbot), they are re-read whatever
        // else the configuration says; a bad pair is logged and the previous one stays in use.
        current.value.turn.tls?.reload(logger: logger)
        current.value.signalingTLS?.reload(logger: logger)
        let new: ServerSettings
        do {
            new = try ServerSettings.load(file: file, environment: ProcessInfo.processInfo.environment, flags: flags)
        } catch {
            logger.error("reload: invalid configuration, the running one stays in force: \(error)")
            return
        }
        let old = current.value
        credentials.update(demo.credentials(for: new))
        credentials.throttle.update(new.throttle)
        credentials.lookups?.update(new.lookups.chain)
        turn.updateLimits(new.turn.limits)
        hub.updateLimits(from: new.signaling)
        logLevel.current = new.logLevel
        let needRestart = ConfigKeys.all.filter { !$0.reloadable && old.raw[$0.name] != new.raw[$0.name] }.map(\.name)
        if !needRestart.isEmpty {
            logger.warning("reload: changed settings that take effect after a restart: \(needRestart.joined(separator: ", "))")
        }
        var kept = new
        kept.turn.tls = old.turn.tls
        kept.signalingTLS = old.signalingTLS
        current.value = kept
        logger.info("reload: configuration applied", metadata: [
            "users": "\(new.credentials.users.count)", "secrets": "\(new.credentials.sharedSecrets.count)",
            "log-level": "\(new.logLevel)",
        ])
    }
}

/// The settings in force, shared between the reload handler and whoever reads them.
final class LockedSettings: Sendable {
    private let settings: Mutex<ServerSettings>
    init(_ settings: ServerSettings) { self.settings = Mutex(settings) }
    var value: ServerSettings {
        get { settings.withLock { $0 } }
        set { settings.withLock { $0 = newValue } }
    }
}
