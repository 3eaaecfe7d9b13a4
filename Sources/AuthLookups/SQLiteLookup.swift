import Auth
import Foundation
import Logging
import SQLiteNIO

/// `auth.sqlite`: users from a coturn SQLite user database, unchanged (`turnusers_lt`: realm, name,
/// hmackey = hex MD5(name:realm:password), as `turnadmin -a -b FILE -u NAME -r REALM -p PASSWORD`
/// writes it). Opened read-only; each lookup is one indexed query (the table's primary key is
/// (realm, name)) on sqlite-nio's thread pool, never on an event loop. Users added or removed with
/// `turnadmin` while the server runs count after the lookup cache's TTL.
public final class SQLiteLookup: PasswordLookup {
    let connection: SQLiteConnection
    public let path: String

    private init(connection: SQLiteConnection, path: String) {
        self.connection = connection
        self.path = path
    }

    /// Opens `path` read-only and checks that it has coturn's `turnusers_lt` table.
    public static func open(path: String, logger: Logger) async throws -> SQLiteLookup {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw LookupSetupError("auth.sqlite: cannot read \(path)")
        }
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let escaped = absolute.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? absolute
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: "file:\(escaped)?mode=ro"), logger: logger)
        } catch {
            throw LookupSetupError("auth.sqlite: cannot open \(path): \(error)")
        }
        do {
            // turnadmin may be writing at the moment we read: wait for its lock rather than fail the login.
            _ = try await connection.query("PRAGMA busy_timeout = 2000")
            let tables = try await connection.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'turnusers_lt'")
            guard !tables.isEmpty else { throw LookupSetupError("auth.sqlite: \(path) has no turnusers_lt table (coturn's schema)") }
        } catch {
            try? await connection.close()
            if let e = error as? LookupSetupError { throw e }
            throw LookupSetupError("auth.sqlite: cannot read \(path): \(error)")
        }
        return SQLiteLookup(connection: connection, path: path)
    }

    public func lookup(username: String, realm: String) async throws -> LookupAnswer {
        let rows = try await connection.query("SELECT hmackey FROM turnusers_lt WHERE name = ?1 AND realm = ?2",
                                              [.text(username), .text(realm)])
        return CoturnUserKey.answer(rows.compactMap { $0.column("hmackey")?.string })
    }

    public func close() async {
        try? await connection.close()
    }
}

/// coturn's `hmackey` column: the hex MD5 long-term key. A 64-digit key (coturn's SHA-256 password
/// algorithm) cannot serve the MD5 algorithm browsers use, so it counts as no key.
enum CoturnUserKey {
    static func answer(_ hexKeys: [String]) -> LookupAnswer {
        let keys = hexKeys.compactMap { StoredSecret.longTermKey(hex: $0.trimmingCharacters(in: .whitespaces)) }
        return keys.isEmpty ? .unknown : .found(keys)
    }
}

/// A configured lookup that cannot start (missing file, wrong schema, bad URL): the server does not start.
public struct LookupSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
