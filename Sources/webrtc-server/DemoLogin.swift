import Auth
import Foundation
import Signaling

/// The first run's login. When the configuration gives no way to log in (no `auth.users`, no
/// `auth.secrets`, no `auth.sqlite` or `auth.http_lookup`) and `auth.demo_login` is on, the server adds one user, `demo`, whose password is made
/// at start for this process's life and logged once with a ready URL, so that the README's first command
/// gives a working call in two browser tabs. A configured user or secret turns it off (a reload that
/// adds one removes `demo`; one that removes them all brings it back, with the same password).
struct DemoLogin: Sendable {
    static let username = "demo"
    let password: String

    init() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<18).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        password = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    /// Whether `settings` leave nobody able to log in, so the demo login applies.
    static func applies(to settings: ServerSettings) -> Bool {
        settings.demoLoginAllowed && settings.credentials.users.isEmpty && settings.credentials.sharedSecrets.isEmpty
            && !settings.lookups.configured
    }

    /// The credentials to put in force for `settings`: theirs, with the demo user when it applies.
    func credentials(for settings: ServerSettings) -> CredentialStore.Settings {
        var c = settings.credentials
        if Self.applies(to: settings) { c.users[Self.username] = password }
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
