import Crypto
import Foundation
import Synchronization

/// What the lookup knows about a username.
public enum CredentialLookup: Equatable, Sendable {
    /// Candidate passwords (one for a static user, one per accepted secret for an ephemeral name).
    case passwords([String])
    /// An ephemeral (TURN REST) username whose expiry time has passed.
    case expired
    /// An ephemeral (TURN REST) username whose expiry lies further ahead than `maxEphemeralLifetime`
    /// allows: refused, so that a leaked secret cannot mint credentials that never end.
    case expiryTooFar
    /// No such user.
    case unknown
}

/// One password (or long-term key) a username may have, and who is behind it.
public struct PasswordCandidate: Sendable, Equatable {
    public let secret: StoredSecret
    /// Whom per-user quotas count: the static username, the user part of an ephemeral name, the login
    /// behind a session credential.
    public let owner: String
    /// The signaling session a session credential belongs to (its allocations end with it); nil otherwise.
    public let session: String?

    public init(_ secret: StoredSecret, owner: String, session: String? = nil) {
        self.secret = secret
        self.owner = owner
        self.session = session
    }

    public init(password: String, owner: String, session: String? = nil) {
        self.init(.password(password), owner: owner, session: session)
    }

    /// The password, when it is known as one (not as a stored key).
    public var password: String? {
        if case .password(let p) = secret { return p }
        return nil
    }
}

/// `CredentialLookup` with each password's owner and session.
public enum CredentialResolution: Equatable, Sendable {
    case candidates([PasswordCandidate])
    case expired
    case expiryTooFar
    case unknown
    /// Only the lookup chain can tell, and its cache does not know yet: ask `resolveLookingUp`.
    case lookupNeeded
    /// The lookup chain threw, timed out or was full: an authentication failure for this login.
    case lookupFailed(LookupChain.Failure)

    var lookup: CredentialLookup {
        switch self {
        case .candidates(let c): .passwords(c.compactMap(\.password))
        case .expired: .expired
        case .expiryTooFar: .expiryTooFar
        case .unknown, .lookupNeeded, .lookupFailed: .unknown
        }
    }
}

/// The one password lookup both halves of the server use (TURN long-term credentials and the
/// signaling `authenticate` event). Nothing here knows about sockets.
///
/// Kinds of credential, usable at the same time, asked in this order:
/// - per-session credentials minted for signaling sessions (`sessions`), revoked when the session ends;
/// - static users from configuration;
/// - ephemeral credentials from shared secrets, the TURN REST convention: username
///   `<expiry-unix-time>:<user>`, password `base64(HMAC-SHA1(secret, username))`. Several secrets may be
///   accepted at once so that a secret can be rotated without breaking credentials already handed out;
/// - the lookup chain (`lookups`): databases, an HTTP backend, the embedding app's own function. It may
///   be asynchronous: `resolve` answers from its cache or says `.lookupNeeded`, and the caller, off its
///   event loop, awaits `resolveLookingUp`.
public final class CredentialStore: Sendable {
    public struct Settings: Sendable, Equatable {
        public var users: [String: String]
        public var sharedSecrets: [String]
        /// The furthest an ephemeral credential's expiry may lie ahead, in seconds (plus
        /// `ephemeralClockLeeway` for clocks that differ); 0 = no ceiling.
        public var maxEphemeralLifetime: TimeInterval
        /// The TURN realm: the lookup chain is asked for keys of this realm, and a signaling password is
        /// checked against a stored key MD5(user:realm:password) with it.
        public var realm: String

        public init(users: [String: String] = [:], sharedSecrets: [String] = [], maxEphemeralLifetime: TimeInterval = 86_400,
                    realm: String = "webrtc-server") {
            self.users = users
            self.sharedSecrets = sharedSecrets
            self.maxEphemeralLifetime = maxEphemeralLifetime
            self.realm = realm
        }
    }

    /// How far the app server's clock, which mints ephemeral credentials, may run ahead of ours.
    public static let ephemeralClockLeeway: TimeInterval = 300

    private let settings: Mutex<Settings>
    private let clock: @Sendable () -> Date
    /// Credentials minted per signaling session; looked up before users and secrets.
    public let sessions: SessionCredentials
    /// Failed authentications per source address, for both halves (signaling login, TURN 401/441).
    public let throttle: AuthThrottle
    /// Asked after sessions, users and secrets; nil when none is configured or plugged in.
    public let lookups: LookupChain?

    /// `sessionSecret`: a cluster's shared secret, so that session credentials minted on any instance are
    /// accepted on every one (see `SessionCredentials`).
    public init(_ settings: Settings, clock: @escaping @Sendable () -> Date = { Date() }, sessionSecret: String? = nil,
                lookups: LookupChain? = nil) {
        self.settings = Mutex(settings)
        self.clock = clock
        self.sessions = SessionCredentials(clock: clock, sharedSecret: sessionSecret)
        self.throttle = AuthThrottle(clock: { clock().timeIntervalSince1970 })
        self.lookups = lookups.flatMap { $0.links.isEmpty ? nil : $0 }
    }

    /// Replaces users and secrets (configuration reload). Credentials already checked stay valid
    /// for whatever they were used for; new lookups see the new settings.
    public func update(_ newSettings: Settings) {
        settings.withLock { $0 = newSettings }
    }

    public var current: Settings { settings.withLock { $0 } }

    public func lookup(_ username: String) -> CredentialLookup { resolve(username).lookup }

    /// Every password `username` may have, each with its owner (whom per-user quotas count) and session,
    /// without waiting: from sessions, users, secrets and the lookup chain's cache; `.lookupNeeded` when
    /// only the lookup chain can tell.
    public func resolve(_ username: String) -> CredentialResolution {
        let builtIn = resolveBuiltIn(username)
        guard builtIn == .unknown, let lookups else { return builtIn }
        guard let answer = lookups.cached(username: username, realm: current.realm) else { return .lookupNeeded }
        return Self.resolution(answer, username: username)
    }

    /// The same, asking the lookup chain when its cache does not know (never call it on an event loop
    /// that must not wait: the answer may take the chain's timeout).
    public func resolveLookingUp(_ username: String) async -> CredentialResolution {
        let quick = resolve(username)
        guard quick == .lookupNeeded, let lookups else { return quick }
        switch await lookups.resolve(username: username, realm: current.realm) {
        case .success(let answer): return Self.resolution(answer, username: username)
        case .failure(let failure): return .lookupFailed(failure)
        }
    }

    private static func resolution(_ answer: LookupAnswer, username: String) -> CredentialResolution {
        switch answer {
        case .found(let secrets): secrets.isEmpty ? .unknown : .candidates(secrets.map { PasswordCandidate($0, owner: username) })
        case .unknown: .unknown
        case .expired: .expired
        }
    }

    /// Sessions, static users and shared secrets: a session credential (the login behind it), a static
    /// user (the name), an ephemeral `<expiry>:<user>` name (`<user>`: each new expiry is the same
    /// person). A name that is both a session credential's shape and an ephemeral one (a cluster session
    /// credential, a REST user with colons) gets both kinds of candidate.
    private func resolveBuiltIn(_ username: String) -> CredentialResolution {
        let session = sessions.resolve(username)
        if case .candidates(let own)? = session, !sessions.isShared { return .candidates(own) }
        let s = current
        var candidates: [PasswordCandidate] = []
        if case .candidates(let own)? = session { candidates = own }
        if let password = s.users[username] { return .candidates(candidates + [PasswordCandidate(password: password, owner: username)]) }
        guard !s.sharedSecrets.isEmpty, let expiry = EphemeralCredential.expiry(of: username) else {
            return candidates.isEmpty ? (session ?? .unknown) : .candidates(candidates)
        }
        let now = clock().timeIntervalSince1970
        guard Double(expiry) > now else { return candidates.isEmpty ? .expired : .candidates(candidates) }
        if s.maxEphemeralLifetime > 0, Double(expiry) > now + s.maxEphemeralLifetime + Self.ephemeralClockLeeway {
            return candidates.isEmpty ? .expiryTooFar : .candidates(candidates)
        }
        let user = username.firstIndex(of: ":").map { String(username[username.index(after: $0)...]) } ?? username
        return .candidates(candidates + s.sharedSecrets.map {
            PasswordCandidate(password: EphemeralCredential.password(username: username, secret: $0), owner: user)
        })
    }

    /// A signaling login's password check, without waiting.
    public enum Verification: Equatable, Sendable {
        case accepted
        case refused
        /// Only the lookup chain can tell: `verifyLookingUp`.
        case lookupNeeded
    }

    public func check(username: String, password: String) -> Verification {
        Self.verification(resolve(username), username: username, password: password, realm: current.realm)
    }

    /// A signaling login's password check once the lookup chain was asked.
    public enum Verdict: Equatable, Sendable {
        case accepted, refused
        /// The lookup chain failed, timed out or was full.
        case unavailable
    }

    /// The signaling half's check of `password` for `username`, asking the lookup chain if need be (off
    /// the event loop).
    public func verifyLookingUp(username: String, password: String) async -> Verdict {
        let resolution = await resolveLookingUp(username)
        if case .lookupFailed = resolution { return .unavailable }
        return Self.verification(resolution, username: username, password: password, realm: current.realm) == .accepted ? .accepted : .refused
    }

    /// True when `password` is valid for `username` with what is known without waiting.
    public func verify(username: String, password: String) -> Bool {
        check(username: username, password: password) == .accepted
    }

    private static func verification(_ r: CredentialResolution, username: String, password: String, realm: String) -> Verification {
        switch r {
        case .candidates(let candidates):
            return candidates.contains { $0.secret.accepts(password, username: username, realm: realm) } ? .accepted : .refused
        case .lookupNeeded: return .lookupNeeded
        case .expired, .expiryTooFar, .unknown, .lookupFailed: return .refused
        }
    }

    /// Static user names, for USERHASH resolution (an ephemeral name cannot be recovered from its hash).
    public var staticUsernames: [String] { Array(current.users.keys) }

    /// Mints an ephemeral credential with the first (newest) shared secret; nil without a secret.
    public func mintEphemeral(user: String, lifetime: TimeInterval) -> (username: String, password: String)? {
        guard let secret = current.sharedSecrets.first else { return nil }
        let expiry = Int(clock().timeIntervalSince1970 + lifetime)
        let name = "\(expiry):\(user)"
        return (name, EphemeralCredential.password(username: name, secret: secret))
    }
}

/// The TURN REST API convention for time-limited credentials (draft-uberti-behave-turn-rest).
public enum EphemeralCredential {
    /// The expiry time encoded at the start of `expiry:user` (or a bare timestamp); nil if not that form.
    public static func expiry(of username: String) -> Int? {
        let head = username.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard !head.isEmpty, head.count <= 12, head.allSatisfy(\.isASCII), head.allSatisfy(\.isNumber) else { return nil }
        return Int(head)
    }

    public static func password(username: String, secret: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: Array(username.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(mac).base64EncodedString()
    }
}

/// Compares secrets without an early exit, so timing does not tell how much of a guess was right.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
