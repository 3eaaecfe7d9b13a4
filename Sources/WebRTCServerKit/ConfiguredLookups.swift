import Auth
import AuthLookups
import Foundation
import Logging

/// The password lookups configuration names (`auth.sqlite`, `auth.http_lookup`), in that order after
/// the built-in sessions, users and secrets, and the settings of the cache in front of them.
struct LookupSettings: Equatable {
    var sqlitePath = ""
    var postgresURL = ""
    var httpURL: URL?
    var httpSecret = ""
    var chain = LookupChain.Settings()

    var configured: Bool { !sqlitePath.isEmpty || !postgresURL.isEmpty || httpURL != nil }

    /// Opens what is configured, in chain order. A database that cannot be opened stops the start.
    func open(logger: Logger) async throws -> [LookupChain.Link] {
        var links: [LookupChain.Link] = []
        if !sqlitePath.isEmpty {
            links.append(.init(name: "sqlite", try await SQLiteLookup.open(path: sqlitePath, logger: logger)))
        }
        if !postgresURL.isEmpty {
            links.append(.init(name: "postgresql", try await PostgresLookup.open(url: postgresURL, logger: logger)))
        }
        if let httpURL {
            links.append(.init(name: "http", try HTTPLookup(url: httpURL, secret: httpSecret, timeout: chain.timeout)))
        }
        return links
    }
}
