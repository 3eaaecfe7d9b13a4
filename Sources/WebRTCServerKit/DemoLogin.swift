import Auth
import Foundation
import Signaling

/// The first run's login. When the configuration gives no way to log in (no `auth.users`, no
/// `auth.secrets`, no lookup, no join token key) and `auth.demo_login` is on, the server adds one user, `demo`, whose password is made
/// at start for this process's life and logged once with a ready URL, so that the README's first command
/// gives a working call in two browser tabs. A configured user or secret turns it off (a reload that
/// adds one removes `demo`; one that removes them all brings it back, with the same password).
struct DemoLogin: Sendable {
    static let username = "demo"
    let password: String
    /// Lookups given in code (`ServerPlugins.lookups`) are a way to log in too: with them it never applies.
    let pluggedLookups: Bool

    init(pluggedLookups: Bool = false) {
        self.pluggedLookups = pluggedLookups
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<18).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        password = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    /// Whether `settings` leave nobody able to log in, so the demo login applies.
    func applies(to settings: ServerSettings) -> Bool {
        !pluggedLookups && settings.demoLoginAllowed && settings.credentials.users.isEmpty && settings.credentials.sharedSecrets.isEmpty
            && !settings.lookups.configured && !settings.tokens.configured
    }

    /// The credentials to put in force for `settings`: theirs, with the demo user when it applies.
    func credentials(for settings: ServerSettings) -> CredentialStore.Settings {
        var c = settings.credentials
        if applies(to: settings) { c.users[Self.username] = password }
        return c
    }

    /// The example page's address on this machine, logged in as `demo`.
    func url(_ signaling: SignalingConfiguration) -> String {
        let scheme = signaling.tlsEnabled ? "https" : "http"
        var query = URLComponents()
        query.queryItems = [URLQueryItem(name: "user", value: Self.username), URLQueryItem(name: "password", value: password)]
        return "\(scheme)://localhost:\(signaling.port)/room/demo?\(query.percentEncodedQuery ?? "")"
    }
}
