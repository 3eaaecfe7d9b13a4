import Foundation
import Synchronization

/// TURN credentials minted for one signaling session (RFC 8489 long-term credentials, handed to the
/// browser in `authenticated.data.ice_servers`). Unlike TURN REST credentials they are revocable: when the
/// session ends they stop being accepted, and whoever listens (the TURN half) releases what they hold.
///
/// The username keeps the TURN REST shape `<expiry>:<session>` so clients and logs see a familiar form;
/// the password is random, so nothing outside this registry can derive it.
public final class SessionCredentials: Sendable {
    public struct Credential: Sendable, Equatable {
        public let username: String
        public let password: String
        public let expiry: Date
        /// Who logged in to the session (its signaling username): quotas count this person.
        public let owner: String
    }

    public typealias RevocationObserver = @Sendable (_ username: String) -> Void

    private struct State {
        var byUsername: [String: Credential] = [:]
        var bySession: [String: [String]] = [:]
        var observers: [RevocationObserver] = []
    }

    private let state = Mutex(State())
    private let clock: @Sendable () -> Date

    public init(clock: @escaping @Sendable () -> Date = { Date() }) {
        self.clock = clock
    }

    /// Mints a credential for `session`, logged in as `owner`, valid for `lifetime` seconds (or until revoked).
    public func mint(session: String, owner: String, lifetime: TimeInterval) -> Credential {
        let expiry = clock().addingTimeInterval(lifetime)
        let username = "\(Int(expiry.timeIntervalSince1970)):\(session)"
        var bytes = [UInt8](repeating: 0, count: 18)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = rng.next() }
        let credential = Credential(username: username, password: Data(bytes).base64EncodedString(), expiry: expiry, owner: owner)
        state.withLock {
            $0.byUsername[username] = credential
            $0.bySession[session, default: []].append(username)
        }
        return credential
    }

    /// The credential for `username`, nil when unknown or revoked; `expired` tells a lapsed one.
    func lookup(_ username: String) -> CredentialLookup? {
        guard let c = state.withLock({ $0.byUsername[username] }) else { return nil }
        return c.expiry > clock() ? .passwords([c.password]) : .expired
    }

    /// The signaling username behind a minted `username`; nil when it is not one of ours (or revoked).
    func owner(of username: String) -> String? { state.withLock { $0.byUsername[username]?.owner } }

    /// Ends `session`: its credentials stop being accepted and every observer hears each username.
    @discardableResult
    public func revoke(session: String) -> [String] {
        let (names, observers) = state.withLock { s -> ([String], [RevocationObserver]) in
            let names = s.bySession.removeValue(forKey: session) ?? []
            for n in names { s.byUsername.removeValue(forKey: n) }
            return (names, s.observers)
        }
        for n in names { for o in observers { o(n) } }
        return names
    }

    /// Called with each revoked username (e.g. to release that user's TURN allocations).
    public func onRevoke(_ observer: @escaping RevocationObserver) {
        state.withLock { $0.observers.append(observer) }
    }

    public var count: Int { state.withLock { $0.byUsername.count } }
}
