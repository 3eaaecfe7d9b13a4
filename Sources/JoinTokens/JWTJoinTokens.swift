import Auth
import Foundation
import JWTKit
import Synchronization

/// Signed join tokens (JWT) verified with jwt-kit (its parser and its HS256/ES256/EdDSA algorithms): HS256 with any of several shared keys (`auth.jwt_keys`,
/// `kid=secret`; a token's `kid` picks one, a token without one is tried against each, so keys rotate by
/// adding the new one before the old one goes), and ES256/EdDSA public keys from a JWKS file
/// (`auth.jwks_file`). `update` swaps the keys in at once (SIGHUP). Claims:
/// - `sub` (required): the username; `room` (required): the only room the token opens;
/// - `exp` (required) and `nbf` (optional), each with `leeway` seconds for clock skew;
/// - `name`, `metadata` (optional): what the others see; `permissions` (optional): `broadcast`, `turn`;
/// - `jti` (optional): the token is single-use on this instance, remembered until its `exp`.
public final class JWTJoinTokens: JoinTokenVerifier {
    public struct Settings: Sendable, Equatable {
        /// false: every token is refused as `not_accepted` (`auth.methods` without `token`).
        public var accepted = true
        /// kid → HS256 secret.
        public var hmacKeys: [String: String] = [:]
        /// The JWKS document's text (public ES256/EdDSA keys), if any.
        public var jwks: String?
        /// Seconds of clock skew allowed on `exp` and `nbf`.
        public var leeway: TimeInterval = 10
        /// Single-use token ids remembered at most (expired ones are forgotten first); past it a token
        /// with a `jti` is refused as `reused` rather than remembered.
        public var maxRemembered = 100_000

        public init(hmacKeys: [String: String] = [:], jwks: String? = nil, leeway: TimeInterval = 10) {
            self.hmacKeys = hmacKeys
            self.jwks = jwks
            self.leeway = leeway
        }

        public var hasKeys: Bool { !hmacKeys.isEmpty || jwks != nil }
    }

    /// A verifying key: its `kid` and jwt-kit's algorithm for it (HS256, ES256 or EdDSA).
    struct Key: Sendable {
        let kid: String
        let algorithm: any JWTAlgorithm
    }

    private struct State {
        var keys: [Key]
        var settings: Settings
    }
    private let state: Mutex<State>
    /// jti → when it may be forgotten.
    private let used = Mutex<[String: Date]>([:])
    private let now: @Sendable () -> Date

    /// Throws `JoinTokenSetupError` when the JWKS is not a key set jwt-kit reads.
    public init(_ settings: Settings, now: @escaping @Sendable () -> Date = Date.init) async throws {
        state = Mutex(State(keys: try await Self.keys(settings), settings: settings))
        self.now = now
    }

    /// New keys and leeway for every later login (a reload); on error the old ones stay.
    public func update(_ settings: Settings) async throws {
        let keys = try await Self.keys(settings)
        state.withLock { $0 = State(keys: keys, settings: settings) }
    }

    /// jwt-kit turns each configured key into its algorithm once, here (its key collection is an actor:
    /// asking it for every login cost a fifth of the login rate, BENCHMARKS.md); logins then verify with
    /// those algorithms synchronously.
    static func keys(_ settings: Settings) async throws -> [Key] {
        let collection = JWTKeyCollection()
        var keys: [Key] = []
        for (kid, secret) in settings.hmacKeys.sorted(by: { $0.key < $1.key }) {
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
            keys.append(Key(kid: kid, algorithm: try await collection.getKey(for: JWKIdentifier(string: kid), alg: "HS256")))
        }
        guard let text = settings.jwks else { return keys }
        do {
            let set = try JSONDecoder().decode(JWKS.self, from: Data(text.utf8))
            try await collection.add(jwks: set)
            for jwk in set.keys {
                guard let kid = jwk.keyIdentifier else { throw JoinTokenSetupError(problem: "a JWKS key without kid") }
                let alg = jwk.algorithm?.rawValue ?? (jwk.keyType == .octetKeyPair ? "EdDSA" : jwk.keyType == .ecdsa ? "ES256" : "")
                guard ["ES256", "EdDSA"].contains(alg) else {
                    throw JoinTokenSetupError(problem: "JWKS key \(kid.string): only ES256 and EdDSA keys are accepted, not '\(alg)'")
                }
                keys.append(Key(kid: kid.string, algorithm: try await collection.getKey(for: kid, alg: alg)))
            }
        } catch let error as JoinTokenSetupError {
            throw error
        } catch {
            throw JoinTokenSetupError(problem: "not a JWKS document jwt-kit can read: \(error)")
        }
        return keys
    }

    public func verify(_ token: String, room: String) -> Result<JoinGrant, TokenRefusal> {
        let (keys, settings) = state.withLock { ($0.keys, $0.settings) }
        guard settings.accepted, settings.hasKeys else { return .failure(.notAccepted) }
        let bytes = Array(token.utf8)
        let parsed: (header: JWTHeader, payload: JoinClaims, signature: Data)
        do {
            parsed = try DefaultJWTParser().parse(bytes, as: JoinClaims.self)
        } catch {
            return .failure(.malformed)
        }
        // The key its kid names (any key without one) for the algorithm its header names: `none`, or an
        // HS256 header on an ES256 key, finds nothing.
        guard let alg = parsed.header.alg, let signedEnd = bytes.lastIndex(of: UInt8(ascii: ".")) else { return .failure(.signature) }
        let kid = parsed.header.kid
        let signed = bytes[..<signedEnd]
        let verified = keys.contains { key in
            (kid == nil || key.kid == kid) && key.algorithm.name == alg
                && (try? key.algorithm.verify(parsed.signature, signs: signed)) == true
        }
        guard verified else { return .failure(.signature) }
        let claims = parsed.payload
        let now = self.now()
        guard let exp = claims.exp?.value, exp.addingTimeInterval(settings.leeway) > now else { return .failure(.expired) }
        if let nbf = claims.nbf?.value, nbf.addingTimeInterval(-settings.leeway) > now { return .failure(.notYetValid) }
        guard claims.room == room else { return .failure(.wrongRoom) }
        guard let sub = claims.sub?.value, !sub.isEmpty else { return .failure(.noSubject) }
        if let jti = claims.jti?.value, !remember(jti, until: exp.addingTimeInterval(settings.leeway), now: now, max: settings.maxRemembered) {
            return .failure(.reused)
        }
        return .success(JoinGrant(username: sub, name: claims.name, metadataJSON: claims.metadata?.text,
                                  mayBroadcast: claims.permissions?.broadcast ?? true, mayUseTurn: claims.permissions?.turn ?? true))
    }

    /// Whether `jti` is new (and now remembered).
    private func remember(_ jti: String, until: Date, now: Date, max: Int) -> Bool {
        used.withLock { used in
            if let seen = used[jti], seen > now { return false }
            if used.count >= max { used = used.filter { $0.value > now } }
            guard used.count < max else { return false }
            used[jti] = until
            return true
        }
    }
}

public struct JoinTokenSetupError: Error, CustomStringConvertible {
    public let problem: String
    public var description: String { problem }
}

/// The claims of a join token; time claims and the room are checked by `JWTJoinTokens` (with its leeway).
struct JoinClaims: JWTPayload {
    struct Permissions: Codable {
        var broadcast: Bool?
        var turn: Bool?
    }
    var sub: SubjectClaim?
    var room: String?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var jti: IDClaim?
    var name: String?
    var metadata: OpaqueJSON?
    var permissions: Permissions?

    func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// Any JSON value, kept to be passed on as text.
enum OpaqueJSON: Codable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([OpaqueJSON]), object([String: OpaqueJSON])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([OpaqueJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: OpaqueJSON].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Compact JSON text (keys sorted).
    var text: String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) }
    }
}
