import Auth
import Foundation
import JWTKit
import Synchronization

/// Signed join tokens (JWT) verified with jwt-kit: HS256 with any of several shared keys (`auth.jwt_keys`,
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

    private struct State {
        var keys: JWTKeyCollection
        var settings: Settings
    }
    private let state: Mutex<State>
    /// jti → when it may be forgotten.
    private let used = Mutex<[String: Date]>([:])
    private let now: @Sendable () -> Date

    /// Throws `JoinTokenSetupError` when the JWKS is not a key set jwt-kit reads.
    public init(_ settings: Settings, now: @escaping @Sendable () -> Date = Date.init) async throws {
        state = Mutex(State(keys: try await Self.collection(settings), settings: settings))
        self.now = now
    }

    /// New keys and leeway for every later login (a reload); on error the old ones stay.
    public func update(_ settings: Settings) async throws {
        let keys = try await Self.collection(settings)
        state.withLock { $0 = State(keys: keys, settings: settings) }
    }

    static func collection(_ settings: Settings) async throws -> JWTKeyCollection {
        let keys = JWTKeyCollection()
        for (kid, secret) in settings.hmacKeys.sorted(by: { $0.key < $1.key }) {
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
        }
        if let jwks = settings.jwks {
            do {
                try await keys.add(jwksJSON: jwks)
            } catch {
                throw JoinTokenSetupError(problem: "not a JWKS document jwt-kit can read: \(error)")
            }
        }
        return keys
    }

    public func verify(_ token: String, room: String) async -> Result<JoinGrant, TokenRefusal> {
        let (keys, settings) = state.withLock { ($0.keys, $0.settings) }
        guard settings.accepted, settings.hasKeys else { return .failure(.notAccepted) }
        let claims: JoinClaims
        do {
            claims = try await keys.verify(token, as: JoinClaims.self, iteratingKeys: true)
        } catch let error as JWTError where error.errorType == .malformedToken {
            return .failure(.malformed)
        } catch {
            return .failure(.signature)
        }
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
