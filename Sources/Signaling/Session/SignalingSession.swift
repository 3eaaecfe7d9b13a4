import Auth
import Foundation
import NIOCore

/// One WebSocket's conversation with the hub (runs on that connection's event loop only):
/// `authenticate` first, then directed and broadcast messages, with `ping`→`pong` at any time.
/// Every reply goes through the connection's queue, so it stays in order with forwarded messages.
final class SignalingSession {
    let hub: SignalingHub
    let connection: PeerConnection
    let room: String
    /// Host the client used to reach us: the default host of the ICE server URLs.
    let requestHost: String
    private(set) var peerID: String?
    /// `{"from":"<peerID>"`, the start of every message this peer sends, encoded once.
    private var fromPrefix: [UInt8] = []
    private(set) var username: String?
    /// false for a token login whose `permissions.broadcast` is false.
    private var mayBroadcast = true
    private var recentErrors: [ContinuousClock.Instant] = []
    /// Set once a login failed: whatever else arrives before the (possibly delayed) close is ignored.
    private var refused = false
    /// A resume is being asked of another instance, or the password lookup chain is being asked about a
    /// login; frames meanwhile (but `ping`) are ignored: one login at a time.
    private var waiting = false

    init(hub: SignalingHub, connection: PeerConnection, room: String, requestHost: String) {
        self.hub = hub
        self.connection = connection
        self.room = room
        self.requestHost = requestHost
    }

    var isClosing: Bool { connection.isClosing }

    struct AuthenticateFrame: Decodable {
        /// A password login, or a signed join token (`auth.methods` says which are accepted).
        struct Credentials: Decodable {
            let username: String?
            let password: String?
            let token: String?
        }
        let event: String
        let data: Credentials
    }

    // MARK: Inbound

    func receivedText(_ bytes: [UInt8]) {
        connection.touch()
        hub.stats.messagesIn.add()
        guard !refused else { return }
        if bytes.count == 4, bytes == Array("ping".utf8) {
            hub.stats.received(.ping)
            if connection.send(ServerEvents.pong) { hub.stats.sent(.pong) }
            return
        }
        guard !waiting else { return }  // a resume on another instance or a lookup is under way: one login at a time
        guard let peerID else {
            hub.stats.received(.authenticate)
            if let token = Self.resumeToken(in: bytes) {
                resume(token)
            } else {
                authenticate(bytes)
            }
            return
        }
        let envelope: JSONEnvelope
        do {
            envelope = try JSONEnvelope(bytes: bytes)
        } catch .invalidJSON(let why) {
            reject(ServerEvents.error(.invalidJSON, "not JSON: \(why)"))
            return
        } catch {
            reject(ServerEvents.invalidMessage)
            return
        }
        if envelope.event == "authenticate" {
            reject(ServerEvents.error(.alreadyAuthenticated, "this socket is already authenticated as \(peerID)"))
            return
        }
        if envelope.event == "leave", envelope.to == nil {
            // Leaving for good: `left` at once, no held session.
            connection.close(finalEvent: nil, reason: "left")
            return
        }
        guard let to = envelope.to else {
            // As the original server: a message must name its recipient.
            reject(ServerEvents.invalidMessage)
            return
        }
        hub.stats.received(to == SignalingHub.broadcastAddress ? .broadcast : .directed)
        if to == SignalingHub.broadcastAddress, !mayBroadcast {
            reject(ServerEvents.error(.notPermitted, "this login may not broadcast (its token's permissions.broadcast is false)"))
            return
        }
        switch hub.deliver(envelope.forwarded(prefix: fromPrefix, headroom: PeerConnection.payloadHeadroom), from: peerID, room: room, to: to) {
        case .delivered: break
        case .unknownPeer:
            reject(ServerEvents.error(.unknownPeer, "no peer \(to) in room \(room)", extra: [("to", to)]))
        case .unreachable:
            // Not the client's fault: not counted as a bad message.
            if connection.send(ServerEvents.error(.peerUnreachable, "peer \(to) is on another instance, which cannot be reached now",
                                                  extra: [("to", to)])) { hub.stats.sent(.error) }
        }
    }

    func receivedBinary() {
        connection.touch()
        guard !refused else { return }
        // The first message must be `authenticate`; a binary one is not, so it fails the login like any other.
        guard peerID != nil else { return refuseLogin() }
        reject(ServerEvents.error(.binaryNotSupported, "binary frames are not part of the protocol; send JSON text"))
    }

    func receivedTooLarge(size: Int) {
        connection.touch()
        guard !refused else { return }
        guard peerID != nil else { return refuseLogin() }
        reject(ServerEvents.error(.messageTooLarge,
                                  "message of at least \(size) bytes is over the limit of \(hub.configuration.maxMessageSize)"))
    }

    // MARK: Resume

    struct ResumeFrame: Decodable {
        struct Token: Decodable { let token: String }
        let event: String
        let data: Token
    }

    /// The token of a `{"event":"resume","data":{"token":…}}` frame; nil for anything else.
    static func resumeToken(in bytes: [UInt8]) -> String? {
        guard let frame = try? JSONDecoder().decode(ResumeFrame.self, from: Data(bytes)), frame.event == "resume" else { return nil }
        return frame.data.token
    }

    /// A new socket takes over a held session (or a live one whose socket the client lost): same
    /// `peer_id`, a new token, the messages it missed. A failure leaves this socket open for an
    /// `authenticate` and counts against its source in the login throttle.
    private func resume(_ token: String) {
        guard !refusedAsBlocked() else { return }
        do {
            let (peer, _) = try hub.resume(token: token, room: room, connection: connection) { id, newToken, roster, replayed in
                ServerEvents.resumed(peerID: id, resumeToken: newToken, peers: roster, replayed: replayed)
            }
            resumed(as: peer)
        } catch {
            // Held on another instance of the cluster: it hands the session over (or says no).
            if let backplane = hub.backplane, !token.hasPrefix(backplane.resumeTokenPrefix) {
                waiting = true
                let hub = self.hub, connection = self.connection, room = self.room
                let loop = connection.channel.eventLoop
                let session = NIOLoopBound(self, eventLoop: loop)  // the session belongs to its connection's loop
                backplane.requestResume(token: token, room: room) { granted in
                    loop.execute {
                        let session = session.value
                        session.waiting = false
                        guard let (peer, queued) = granted, !connection.isClosing else { return session.resumeFailed() }
                        hub.adoptResumed(peer, queued: queued, connection: connection) { newToken, roster, replayed in
                            ServerEvents.resumed(peerID: peer.info.peerID, resumeToken: newToken, peers: roster, replayed: replayed)
                        }
                        session.resumed(as: peer.info)
                    }
                }
                return
            }
            resumeFailed()
        }
    }

    private func resumed(as peer: PeerInfo) {
        connection.markAuthenticated()
        peerID = peer.peerID
        mayBroadcast = peer.mayBroadcast
        fromPrefix = JSONEnvelope.fromPrefix(peer.peerID)
        username = peer.username
    }

    /// `resume_failed`, counted against the source like a failed login; the socket stays open.
    private func resumeFailed() {
        hub.stats.failedResumes.add()
        hub.stats.authFailures.add()
        let delay = connection.source.map { hub.credentials.throttle.recordFailure($0) } ?? 0
        let connection = self.connection, stats = hub.stats
        let answer = {
            if connection.send(ServerEvents.error(.resumeFailed, "no session to resume with this token in this room; authenticate instead")) {
                stats.sent(.error)
            }
        }
        if delay > 0 {
            connection.channel.eventLoop.scheduleTask(in: .milliseconds(Int64(delay * 1000))) { answer() }
        } else {
            answer()
        }
    }

    // MARK: Authentication

    /// The same per-source throttle as TURN's: a blocked source is refused (and closed) without a password
    /// or token check. True when it was.
    private func refusedAsBlocked() -> Bool {
        guard let source = connection.source, case .blocked(let retryAfter) = hub.credentials.throttle.check(source) else {
            return false
        }
        refused = true
        hub.stats.authBlocked.add()
        hub.stats.sent(.unauthorized)
        connection.close(finalEvent: ServerEvents.unauthorized(reason: "blocked", retryAfter: retryAfter), reason: "source blocked")
        return true
    }

    private func authenticate(_ bytes: [UInt8]) {
        guard !refusedAsBlocked() else { return }
        guard let frame = try? JSONDecoder().decode(AuthenticateFrame.self, from: Data(bytes)), frame.event == "authenticate" else {
            return refuseLogin()
        }
        if let token = frame.data.token { return authenticate(token: token) }
        guard hub.passwordLogins, let name = frame.data.username, let password = frame.data.password else {
            return refuseLogin()
        }
        switch hub.credentials.check(username: name, password: password) {
        case .accepted: admit(JoinGrant(username: name))
        case .refused: refuseLogin()
        case .lookupNeeded:
            // Only the lookup chain knows this user: asked off the loop, the login finishes when it answers.
            waiting = true
            let credentials = hub.credentials, connection = self.connection, loop = connection.channel.eventLoop
            let session = NIOLoopBound(self, eventLoop: loop)
            Task {
                let verdict = await credentials.verifyLookingUp(username: name, password: password)
                loop.execute {
                    let session = session.value
                    session.waiting = false
                    guard !connection.isClosing else { return }
                    switch verdict {
                    case .accepted: session.admit(JoinGrant(username: name))
                    case .refused: session.refuseLogin()
                    case .unavailable: session.refuseUnavailable()
                    }
                }
            }
        }
    }

    /// A signed join token (`JoinTokenVerifier`, on this loop: no I/O); its grant decides the login.
    private func authenticate(token: String) {
        guard let verifier = hub.tokens else {
            hub.stats.tokensRefused.add(.notAccepted)
            return refuseLogin(reason: TokenRefusal.notAccepted.reason)
        }
        switch verifier.verify(token, room: room) {
        case .success(let grant):
            hub.stats.tokensAccepted.add()
            admit(grant)
        case .failure(let refusal):
            hub.stats.tokensRefused.add(refusal)
            refuseLogin(reason: refusal.reason)
        }
    }

    /// A login the lookup chain could not decide (it failed, timed out or was full): `unauthorized` with
    /// reason `unavailable`, not counted against the source (it is not the client's fault).
    private func refuseUnavailable() {
        refused = true
        hub.stats.sent(.unauthorized)
        connection.close(finalEvent: ServerEvents.unauthorized(reason: "unavailable", retryAfter: 1),
                         reason: "password lookup unavailable")
    }

    /// A login whose password or token was accepted: a peer ID, TURN credentials (unless the token
    /// withholds them), the room.
    private func admit(_ grant: JoinGrant) {
        let name = grant.username
        let id = Self.newPeerID()
        let credential = grant.mayUseTurn
            ? hub.credentials.sessions.mint(session: id, owner: name, lifetime: hub.iceServers.credentialLifetime) : nil
        var iceSettings = hub.iceServers
        var iceHost = iceSettings.host ?? requestHost
        if let other = hub.backplane?.turnEndpoint() {
            // cluster.ice_servers least_loaded: another instance's TURN (its credentials work there too).
            iceHost = other.host
            iceSettings.stunPort = other.port
            iceSettings.turnTCP = other.tcp
            iceSettings.turnsPort = other.tlsPort
        }
        let ice = IceServers.json(settings: iceSettings, host: iceHost, credential: credential)
        let room = self.room
        let resumeToken = hub.newResumeToken()
        do {
            let info = PeerInfo(peerID: id, username: name, name: grant.name, metadataJSON: grant.metadataJSON,
                                mayBroadcast: grant.mayBroadcast)
            _ = try hub.join(room: room, info: info, connection: connection, resumeToken: resumeToken) { roster in
                ServerEvents.authenticated(peerID: id, username: name, room: room, peers: roster, iceServersJSON: ice,
                                           resumeToken: resumeToken)
            }
        } catch {
            hub.credentials.sessions.revoke(session: id)
            let event = switch error {
            case .roomFull: ServerEvents.error(.roomFull, "room \(room) already has \(hub.configuration.maxPeersPerRoom) peers")
            }
            connection.close(finalEvent: event, reason: "join refused")
            return
        }
        connection.markAuthenticated()
        peerID = id
        fromPrefix = JSONEnvelope.fromPrefix(id)
        username = name
        mayBroadcast = grant.mayBroadcast
    }

    /// A failed login (wrong credentials, or a first message that is not `authenticate`): counted against
    /// the source in the throttle, answered `unauthorized`, closed.
    /// A refused token says why in `reason` (`token_expired`, …).
    private func refuseLogin(reason: String? = nil) {
        refused = true
        hub.stats.authFailures.add()
        hub.stats.sent(.unauthorized)
        let delay = connection.source.map { hub.credentials.throttle.recordFailure($0) } ?? 0
        let connection = self.connection
        let event = reason.map { ServerEvents.unauthorized(reason: $0, retryAfter: nil) } ?? ServerEvents.unauthorized
        if delay > 0 {
            // Answered late (a growing delay per failure from this source); the socket waits, the loop does not.
            connection.channel.eventLoop.scheduleTask(in: .milliseconds(Int64(delay * 1000))) {
                connection.close(finalEvent: event, reason: "authentication failed")
            }
        } else {
            connection.close(finalEvent: event, reason: "authentication failed")
        }
    }

    /// 16 characters of base64url (96 random bits): no `:` (it ends up in TURN usernames), URL-safe.
    static func newPeerID() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<12).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    // MARK: Abuse

    /// Sends an error event; past `abuseLimit` errors within `abuseWindow`, the socket is closed instead.
    private func reject(_ event: String) {
        hub.stats.badMessages.add()
        hub.stats.received(.invalid)
        let c = hub.configuration
        let now = ContinuousClock.now
        recentErrors.removeAll { now - $0 > c.abuseWindow }
        recentErrors.append(now)
        if recentErrors.count > c.abuseLimit {
            connection.close(finalEvent: ServerEvents.error(.rateLimited, "too many bad messages; closing"), reason: "rate limited")
        } else if connection.send(event) {
            hub.stats.sent(.error)
        }
    }
}
