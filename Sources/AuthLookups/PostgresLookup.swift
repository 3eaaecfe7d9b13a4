import Auth
import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// `auth.postgresql`: users from a coturn PostgreSQL user database, unchanged (`turnusers_lt`: realm,
/// name, hmackey, as `turnadmin -a -e "…" -u NAME -r REALM -p PASSWORD` writes it). One query per lookup
/// on the (realm, name) primary key, through postgres-nio's pooled client (its connections live on
/// NIO's loops, not on TURN's); the pool runs for the process's life.
///
/// `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, or with `?host=/run/postgresql` (a folder: the
/// socket `.s.PGSQL.PORT` in it) for a unix socket; `?sslmode=disable|prefer|require` (default prefer,
/// TCP only).
public final class PostgresLookup: PasswordLookup {
    let client: PostgresClient
    let runner: Task<Void, Never>

    /// Starts the pool's run loop (queries wait for it; the first one is asked once it has begun).
    private init(client: PostgresClient) async {
        self.client = client
        var task: Task<Void, Never>?
        await withCheckedContinuation { started in
            task = Task {
                started.resume()
                await client.run()
            }
        }
        runner = task!
    }

    deinit { runner.cancel() }

    /// Connects and checks the table; a URL, connection or schema problem throws one clear line (a
    /// database that does not answer within `startTimeout` too).
    public static func open(url: String, startTimeout: Duration = .seconds(10), logger: Logger) async throws -> PostgresLookup {
        let configuration = try Self.configuration(url)
        let lookup = await PostgresLookup(client: PostgresClient(configuration: configuration, backgroundLogger: logger))
        do {
            // The pool retries a refused connection without end; the start does not wait that long.
            let found = try await withThrowingTaskGroup(of: Int?.self) { group in
                group.addTask {
                    let rows = try await lookup.client.query(
                        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'turnusers_lt'")
                    var found = 0
                    for try await count in rows.decode(Int.self) { found = count }
                    return found
                }
                group.addTask {
                    try await Task.sleep(for: startTimeout)
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            guard let found else {
                throw LookupSetupError("auth.postgresql: cannot query \(maskingCredentials(url)): no answer within \(startTimeout) (see the PostgresNIO lines above)")
            }
            guard found > 0 else { throw LookupSetupError("auth.postgresql: the database has no turnusers_lt table (coturn's schema)") }
        } catch let error as LookupSetupError {
            lookup.runner.cancel()
            throw error
        } catch {
            lookup.runner.cancel()
            throw LookupSetupError("auth.postgresql: cannot query \(maskingCredentials(url)): \(String(reflecting: error))")
        }
        return lookup
    }

    public func lookup(username: String, realm: String) async throws -> LookupAnswer {
        let rows = try await client.query("SELECT hmackey FROM turnusers_lt WHERE name = \(username) AND realm = \(realm)")
        var keys: [String] = []
        for try await key in rows.decode(String.self) { keys.append(key) }
        return CoturnUserKey.answer(keys)
    }

    static func configuration(_ text: String) throws -> PostgresClient.Configuration {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme?.lowercased() ?? ""),
              let user = url.user, !user.isEmpty else {
            throw LookupSetupError("auth.postgresql: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got '\(maskingCredentials(text))'")
        }
        let query = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        let database = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        let port = url.port ?? 5432
        if let socketDirectory = query["host"], socketDirectory.hasPrefix("/") {
            return .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: url.password,
                         database: database.isEmpty ? nil : database)
        }
        guard let host = url.host, !host.isEmpty else { throw LookupSetupError("auth.postgresql: no host in '\(maskingCredentials(text))'") }
        let tls: PostgresClient.Configuration.TLS
        switch query["sslmode"] ?? "prefer" {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        case let other: throw LookupSetupError("auth.postgresql: sslmode '\(other)': expected disable, prefer or require")
        }
        return .init(host: host, port: port, username: user, password: url.password, database: database.isEmpty ? nil : database, tls: tls)
    }
}
