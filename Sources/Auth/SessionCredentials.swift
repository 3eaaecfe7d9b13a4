import Crypto
import Foundation
import Synchronization

/// TURN credentials minted for one signaling session (RFC 8489 long-term credentials, handed to the
/// browser in `authenticated.data.ice_servers`). Unlike TURN REST credentials they are revocable: when the
/// session ends they stop being accepted, and whoever listens (the TURN half) releases what they hold.
///
/// On a single box the username keeps the TURN REST shape `<expiry>:<session>` and the password is random,
/// so nothing outside this registry can derive it. In a cluster (`sharedSecret` set) every instance must
/// accept the credentials any instance minted without asking it: the username is
/// `<expiry>:<session>:<owner>` and the password HMAC-SHA256(secret, username) in base64; revocations
/// then travel between instances (`revokeRemote`) and are remembered until the credentials expire.
public final class SessionCredentials: Sendable {
    public struct Credential: Sendable, Equatable {
        public let username: String
        public let password: String
        public let expiry: Date
        /// Who logged in to the session (its signaling username): quotas count this person.
        public let owner: String
    }

    /// Where a revocation comes from: this instance's session ending, or another instance's (cluster).
    public enum Origin: Sendable, Equatable { case local, remote }

    public typealias RevocationObserver = @Sendable (_ session: String, _ origin: Origin) -> Void

    private struct State {
        var byUsername: [String: Credential] = [:]
        var bySession: [String: [String]] = [:]
        /// Sessions revoked while their derivable credentials may still be presented (cluster only).
        var revoked: [String: Date] = [:]
        var observers: [RevocationObserver] = []
    }

    private let state = Mutex(State())
    private let clock: @Sendable () -> Date
    /// The cluster secret's bytes (SymmetricKey is not Sendable; one is made per use).
    private let sharedSecret: [UInt8]?

    /// `sharedSecret`: the cluster's secret, from which every instance derives the same passwords.
    public init(clock: @escaping @Sendable () -> Date = { Date() }, sharedSecret: String? = nil) {
        self.clock = clock
        self.sharedSecret = sharedSecret.map { Array($0.utf8) }
    }

    public var isShared: Bool { sharedSecret != nil }

    /// Mints a credential for `session`, logged in as `owner`, valid for `lifetime` seconds (or until revoked).
    public func mint(session: String, owner: String, lifetime: TimeInterval) -> Credential {
        let expiry = clock().addingTimeInterval(lifetime)
        let credential: Credential
        if let key = sharedSecret {
            // The owner rides along, signed: another instance counts quotas by it without asking us.
            let username = "\(Int(expiry.timeIntervalSince1970)):\(session):\(String(owner.utf8.prefix(256)) ?? owner)"
            credential = Credential(username: username, password: Self.derivedPassword(username, key), expiry: expiry, owner: owner)
        } else {
            let username = "\(Int(expiry.timeIntervalSince1970)):\(session)"
            var bytes = [UInt8](repeating: 0, count: 18)
            var rng = SystemRandomNumberGenerator()
            for i in bytes.indices { bytes[i] = rng.next() }
            credential = Credential(username: username, password: Data(bytes).base64EncodedString(), expiry: expiry, owner: owner)
        }
        state.withLock {
            $0.byUsername[credential.username] = credential
            $0.bySession[session, default: []].append(credential.username)
        }
        return credential
    }

    static func derivedPassword(_ username: String, _ key: [UInt8]) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Array(username.utf8), using: SymmetricKey(data: key))).base64EncodedString()
    }

    /// The session a username minted here (or, in a cluster, anywhere) belongs to: the field after the
    /// expiry. Nil for any other shape.
    public static func session(ofUsername username: String) -> String? {
        let parts = username.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, EphemeralCredential.expiry(of: username) != nil, !parts[1].isEmpty else { return nil }
        return String(parts[1])
    }

    /// What this registry knows of `username`: a candidate password with its owner and session, `.expired`,
    /// or nil when the name is not a session credential (or was revoked).
    func resolve(_ username: String) -> CredentialResolution? {
        let now = clock()
        if let c = state.withLock({ $0.byUsername[username] }) {
            guard c.expiry > now else { return .expired }
            return .candidates([PasswordCandidate(password: c.password, owner: c.owner, session: Self.session(ofUsername: username))])
        }
        // Cluster: minted by another instance, recognised by its shape and verified by its derived password.
        guard let key = sharedSecret else { return nil }
        let parts = username.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let expiry = EphemeralCredential.expiry(of: username), !parts[1].isEmpty else { return nil }
        let session = String(parts[1])
        if state.withLock({ $0.revoked[session] != nil }) { return nil }
        guard Double(expiry) > now.timeIntervalSince1970 else { return .expired }
        return .candidates([PasswordCandidate(password: Self.derivedPassword(username, key), owner: String(parts[2]), session: session)])
    }

    /// The credential for `username`, nil when unknown or revoked; `expired` tells a lapsed one.
    func lookup(_ username: String) -> CredentialLookup? {
        switch resolve(username) {
        case .candidates(let c)?: return .passwords(c.compactMap(\.password))
        case nil: return nil
        case let other?: return other.lookup
        }
    }

    /// Ends `session` here: its credentials stop being accepted and every observer hears of it (the TURN
    /// half releases its allocations; in a cluster, the revocation is passed on to the other instances).
    @discardableResult
    public func revoke(session: String, until: Date? = nil) -> [String] {
        let (names, observers) = state.withLock { s -> ([String], [RevocationObserver]) in
            let names = s.bySession.removeValue(forKey: session) ?? []
            var latest = until ?? .distantPast
            for n in names {
                if let c = s.byUsername.removeValue(forKey: n) { latest = max(latest, c.expiry) }
            }
            if sharedSecret != nil, latest > clock() { s.revoked[session] = latest }
            return (names, s.observers)
        }
        for o in observers { o(session, .local) }
        return names
    }

    /// Another instance ended `session` (its credentials may be presented here until `until`): refused from
    /// now on, and the observers hear of it as a remote revocation.
    public func revokeRemote(session: String, until: Date) {
        let (isNew, observers) = state.withLock { s -> (Bool, [RevocationObserver]) in
            let isNew = s.revoked[session] == nil
            s.revoked[session] = max(s.revoked[session] ?? .distantPast, until)
            return (isNew, s.observers)
        }
        if isNew { for o in observers { o(session, .remote) } }
    }

    /// Sessions revoked whose credentials have not expired yet: what a newcomer to the cluster is told.
    public var activeRevocations: [String: Date] {
        let now = clock()
        return state.withLock { s in
            s.revoked = s.revoked.filter { $0.value > now }
            return s.revoked
        }
    }

    /// Forgets `session` here without revoking it: it moved to another instance of the cluster, which ends
    /// it (its credentials, derived from the cluster's secret, stay valid).
    public func forget(session: String) {
        state.withLock { s in
            for n in s.bySession.removeValue(forKey: session) ?? [] { s.byUsername.removeValue(forKey: n) }
        }
    }

    /// Takes over `session`, which moved here from another instance: it ends here from now on (a graceful
    /// stop of this instance revokes it).
    public func adopt(session: String) {
        state.withLock { s in if s.bySession[session] == nil { s.bySession[session] = [] } }
    }

    /// Sessions minted here and not ended (what a graceful stop hands over to the cluster).
    public var liveSessions: [String] { state.withLock { Array($0.bySession.keys) } }

    /// Called with each revoked session (e.g. to release that session's TURN allocations).
    public func onRevoke(_ observer: @escaping RevocationObserver) {
        state.withLock { $0.observers.append(observer) }
    }

    public var count: Int { state.withLock { $0.byUsername.count } }
}
