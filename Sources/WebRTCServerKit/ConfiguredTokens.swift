import Foundation
import JoinTokens

/// auth.methods, auth.jwt_keys, auth.jwks_file and auth.token_leeway: which logins signaling accepts
/// and the keys that verify join tokens. The JWKS file is read with the rest of the configuration, so a
/// reload re-reads it and a missing or unreadable file is a configuration error.
struct TokenSettings: Equatable {
    static let methods = ["password", "token"]

    var passwords = true
    var verifier = JWTJoinTokens.Settings()

    /// Whether tokens can log anyone in (accepted, with a key).
    var configured: Bool { verifier.accepted && verifier.hasKeys }

    init() {}

    init(methods: [String], hmacKeys: [String: String], jwksPath: String, leeway: Duration) throws {
        guard !methods.isEmpty, methods.allSatisfy(Self.methods.contains) else {
            throw ConfigError(.authMethods, problem: "expected one or both of \(Self.methods.joined(separator: ", ")), got '\(methods.joined(separator: ","))'")
        }
        passwords = methods.contains("password")
        verifier.accepted = methods.contains("token")
        verifier.hmacKeys = hmacKeys
        verifier.leeway = leeway.timeInterval
        // RFC 7518 3.2: an HS256 key at least as long as the hash (jwt-kit asserts the same).
        if let short = hmacKeys.first(where: { $0.key.isEmpty || $0.value.utf8.count < 32 }) {
            throw ConfigError(.authJwtKeys, problem: "each key needs a kid and a secret of at least 32 bytes ('\(short.key)')")
        }
        if !jwksPath.isEmpty {
            guard let text = try? String(contentsOfFile: jwksPath, encoding: .utf8) else {
                throw ConfigError(.authJwksFile, problem: "cannot read \(jwksPath)")
            }
            verifier.jwks = text
        }
        if !passwords && !verifier.hasKeys {
            throw ConfigError(.authMethods, problem: "token only, but no auth.jwt_keys or auth.jwks_file: nobody could log in")
        }
    }
}
