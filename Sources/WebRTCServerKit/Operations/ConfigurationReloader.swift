import Auth
import ServerTLS
import Foundation
import JoinTokens
import Synchronization
import Logging
import Signaling
import StunTurn

/// SIGHUP (`WebRTCService.reload`): reads the configuration again from the same file, environment and
/// flags (or takes the settings it is given), and applies what can change while running — users and secrets, the auth throttle, limits, the API token and admin
/// addresses, the log level, the TURN TLS certificate. An invalid configuration changes nothing and is
/// reported in one log line; changed keys that need a restart are named.
struct ConfigurationReloader: Sendable {
    let credentials: CredentialStore
    let tokens: JWTJoinTokens
    let demo: DemoLogin
    let turn: TurnServer
    let hub: SignalingHub
    let logLevel: LogLevelControl
    let logger: Logger
    /// The settings in force (read and replaced on the reload queue only).
    let current: LockedSettings

    /// Re-reads the settings from their origin (settings made in code have none: only the certificates
    /// are re-read).
    func reloadFromOrigin() {
        let old = current.value
        guard let origin = old.origin else {
            reloadCertificates()
            logger.info("reload: settings made in code have no file to re-read; certificates re-read")
            return
        }
        do {
            apply(try ServerSettings.load(file: origin.file, environment: origin.environment, flags: origin.flags))
        } catch {
            reloadCertificates()
            logger.error("reload: invalid configuration, the running one stays in force: \(error)")
        }
    }

    /// The certificate files, on their own: renewed in place (certbot), they are re-read whatever else the
    /// configuration says; a bad pair is logged and the previous one stays in use.
    private func reloadCertificates() {
        current.value.turn.tls?.reload(logger: logger)
        current.value.signalingTLS?.reload(logger: logger)
    }

    func apply(_ new: ServerSettings) {
        reloadCertificates()
        let old = current.value
        credentials.update(demo.credentials(for: new))
        credentials.throttle.update(new.throttle)
        credentials.lookups?.update(new.lookups.chain)
        if new.tokens.verifier != old.tokens.verifier {
            let tokens = self.tokens, logger = self.logger, verifier = new.tokens.verifier
            Task {
                do {
                    try await tokens.update(verifier)
                    logger.info("reload: join token keys applied", metadata: ["hs256": "\(verifier.hmacKeys.count)", "jwks": "\(verifier.jwks != nil)"])
                } catch {
                    logger.error("reload: join token keys not applied, the previous ones stay: \(error)")
                }
            }
        }
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
