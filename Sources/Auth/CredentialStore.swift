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

/// The one password lookup both halves of the server use (TURN long-term credentials and the
/// signaling `authenticate` event). Nothing here knows about sockets.
///
/// Kinds of credential, usable at the same time:
/// - static users from configuration;
/// - ephemeral credentials from shared secrets, the TURN REST convention: username
///   `<expiry-unix-time>:<user>`, password `base64(HMAC-SHA1(secret, username))`. Several secrets may be
///   accepted at once so that a secret can be rotated without breaking credentials already handed out;
/// - per-session credentials minted for signaling sessions (`sessions`), revoked when the session ends.
public final class CredentialStore: Sendable {
    public struct Settings: Sendable, Equatable {
        public var users: [String: String]
        public var sharedSecrets: [String]
        /// The furthest an ephemeral credential's expiry may lie ahead, in seconds (plus
        /// `ephemeralClockLeeway` for clocks that differ); 0 = no ceiling.
        public var maxEphemeralLifetime: TimeInterval

        public init(users: [String: String] = [:], sharedSecrets: [String] = [], maxEphemeralLifetime: TimeInterval = 86_400) {
            self.users = users
            self.sharedSecrets = sharedSecrets
            self.maxEphemeralLifetime = maxEphemeralLifetime
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

    public init(_ settings: Settings, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.settings = Mutex(settings)
        self.clock = clock
        self.sessions = SessionCredentials(clock: clock)
        self.throttle = AuthThrottle(clock: { clock().timeIntervalSince1970 })
    }

    /// Replaces users and secrets (configuration reload). Credentials already checked stay valid
    /// for whatever they were used for; new lookups see the new settings.
    public func update(_ newSettings: Settings) {
        settings.withLock { $0 = newSettings }
    }

    public var current: Settings { settings.withLock { $0 } }

    public func lookup(_ username: String) -> CredentialLookup {
        if let session = sessions.lookup(username) { return session }
        let s = current
        if let password = s.users[username] { return .passwords([password]) }
        guard !s.sharedSecrets.isEmpty, let expiry = EphemeralCredential.expiry(of: username) else { return .unknown }
        let now = clock().timeIntervalSince1970
        guard Double(expiry) > now else { return .expired }
        if s.maxEphemeralLifetime > 0, Double(expiry) > now + s.maxEphemeralLifetime + Self.ephemeralClockLeeway {
            return .expiryTooFar
        }
        return .passwords(s.sharedSecrets.map { EphemeralCredential.password(username: username, secret: $0) })
    }

    /// The person behind `username`, whom per-user quotas count: the signaling login behind a session's
    /// minted credential, the user part of an ephemeral `<expiry>:<user>` name (each new expiry is the same
    /// person), otherwise the username itself.
    public func owner(of username: String) -> String {
        if let owner = sessions.owner(of: username) { return owner }
        if current.users[username] == nil, EphemeralCredential.expiry(of: username) != nil,
           let colon = username.firstIndex(of: ":") {
            return String(username[username.index(after: colon)...])
        }
        return username
    }

    /// True when `password` is valid for `username` (the signaling half's check).
    public func verify(username: String, password: String) -> Bool {
        guard case .passwords(let candidates) = lookup(username) else { return false }
        let given = Array(password.utf8)
        return candidates.contains { constantTimeEqual(Array($0.utf8), given) }
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
