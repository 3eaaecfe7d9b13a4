import Auth
import Foundation
import Logging
import NIOCore
import ServerMetrics
import Synchronization

/// Rooms → peers, with one owner: every change happens under one lock, and delivery happens outside it
/// through each peer's bounded queue, so a sender never waits for a receiver.
///
/// This is also the Swift API for apps that embed the server: list a room, publish to it, send to one
/// peer, kick one — the `/api/` routes call exactly these.
public final class SignalingHub: Sendable {
    public enum JoinError: Error, Equatable, Sendable {
        case roomFull
    }

    /// Where a member's messages go: its socket, or the queue of its held session while it is away.
    enum Link: Sendable {
        case live(PeerConnection)
        case held(HeldSession)

        /// Sends (live) or queues (held) `text`; false when the socket is gone or the queue is full.
        @discardableResult
        func send(_ text: consuming ByteBuffer) -> Bool {
            switch self {
            case .live(let c): c.send(text)
            case .held(let h): h.enqueue(text)
            }
        }

        @discardableResult
        func send(_ text: String) -> Bool { send(ByteBuffer(string: text)) }
    }

    struct Member: Sendable {
        let info: PeerInfo
        let room: String
        var link: Link
        let joined: JoinStamp
        /// The token that resumes this session (replaced by each resume).
        var resumeToken: String

        var connection: PeerConnection? { if case .live(let c) = link { c } else { nil } }
        var held: HeldSession? { if case .held(let h) = link { h } else { nil } }
        @discardableResult func send(_ text: consuming ByteBuffer) -> Bool { link.send(text) }
        @discardableResult func send(_ text: String) -> Bool { link.send(text) }
    }

    struct State {
        var rooms: [String: [String: Member]] = [:]
        var peers: [String: Member] = [:]
        /// Resume token → peer id.
        var resumeTokens: [String: String] = [:]

        /// Takes a member out of the hub (its room, its token); nil when there is no such member.
        mutating func remove(_ peerID: String) -> Member? {
            guard let m = peers.removeValue(forKey: peerID) else { return nil }
            rooms[m.room]?.removeValue(forKey: peerID)
            if rooms[m.room]?.isEmpty == true { rooms.removeValue(forKey: m.room) }
            resumeTokens.removeValue(forKey: m.resumeToken)
            return m
        }

        /// Stores `m` (after its link or token changed) wherever it is kept.
        mutating func update(_ m: Member) {
            peers[m.info.peerID] = m
            rooms[m.room]?[m.info.peerID] = m
        }
        /// Every open socket, authenticated or not (limits, auth deadline, idle timeout, shutdown).
        var connections: [UInt64: PeerConnection] = [:]
        var nextConnectionID: UInt64 = 1
    }

    private let settings: Mutex<SignalingConfiguration>
    /// The configuration in force; limits, timeouts and the API token can be replaced while running
    /// (`updateLimits`), the rest is fixed at start.
    public var configuration: SignalingConfiguration { settings.withLock { $0 } }
    /// The one limit read per frame: without copying the whole configuration.
    var maxMessageSize: Int { settings.withLock { $0.maxMessageSize } }
    var passwordLogins: Bool { settings.withLock { $0.passwordLogins } }
    public let credentials: CredentialStore
    /// Set on shutdown: sessions closing then keep their TURN credentials, so calls relaying through
    /// this process's TURN server run on for its drain period.
    private let draining = Atomic<Bool>(false)
    public let stats = SignalingStats()
    let hooks: HookDispatcher
    let logger: Logger
    let state = Mutex(State())
    /// Each event loop's end-of-tick flush of the connections written to (`PeerConnection.send`).
    private let flushers = TickFlushers()
    private let iceServerSettings: Mutex<IceServerSettings>
    /// The other instances of a cluster; nil on a single box, which then never looks beyond its own peers.
    private let backplaneBox = Mutex<(any SignalingBackplane)?>(nil)
    var backplane: (any SignalingBackplane)? { backplaneBox.withLock { $0 } }

    /// Joins this hub to a cluster (once, before it serves).
    public func attach(_ backplane: any SignalingBackplane) { backplaneBox.withLock { $0 = backplane } }

    /// False while a cluster's link is down (the instance still serves its own peers).
    public var isClusterLinked: Bool { backplane?.isLinked ?? true }

    /// What `authenticated` lists; the executable updates the ports once the TURN listeners are bound.
    public var iceServers: IceServerSettings {
        get { iceServerSettings.withLock { $0 } }
        set { iceServerSettings.withLock { $0 = newValue } }
    }

    /// Verifies `{"token": …}` logins; nil: tokens are refused (`token_not_accepted`).
    public let tokens: (any JoinTokenVerifier)?

    public init(configuration: SignalingConfiguration, credentials: CredentialStore, tokens: (any JoinTokenVerifier)? = nil,
                hooks: [any SignalingHooks] = [], logger: Logger) {
        self.settings = Mutex(configuration)
        self.credentials = credentials
        self.tokens = tokens
        self.logger = logger
        self.iceServerSettings = Mutex(configuration.iceServers)
        // The webhook first, then the app's hooks, for each event.
        var all: [any SignalingHooks] = []
        if let w = configuration.webhook { all.append(WebhookNotifier(settings: w, logger: logger, stats: stats)) }
        all += hooks
        self.hooks = HookDispatcher(hooks: all, logger: logger, stats: stats)
    }

    // MARK: Connections

    /// Registers a new socket; nil when `maxConnections` are already open.
    func open(source: SourceKey?, channel: any Channel) -> PeerConnection? {
        let c = configuration
        let stats = self.stats
        let flusher = flushers.flusher(for: channel.eventLoop)
        let conn = state.withLock { s -> PeerConnection? in
            guard c.maxConnections == 0 || s.connections.count < c.maxConnections else { return nil }
            let id = s.nextConnectionID
            s.nextConnectionID += 1
            let conn = PeerConnection(id: id, source: source, channel: channel, stats: stats, flusher: flusher)
            s.connections[id] = conn
            return conn
        }
        if conn == nil { stats.rejectedConnections.add() }
        return conn
    }

    /// A connection outside the hub's count, only to tell a client why it is refused.
    func refusedConnection(channel: any Channel) -> PeerConnection {
        PeerConnection(id: 0, source: nil, channel: channel, stats: stats, flusher: flushers.flusher(for: channel.eventLoop))
    }

    /// Removes the socket, and its peer if it had joined. A peer that left (see `PeerConnection.isLeaving`)
    /// is gone: the others get `left`, the session's TURN credentials are revoked (which releases its
    /// allocations), then the hooks run. A socket that just went away, with `signaling.resume_window` on,
    /// leaves its session held instead: the others hear `peer_away`, and nothing else changes until it
    /// resumes or the window ends.
    func closed(_ conn: PeerConnection, peerID: String?) {
        let c = configuration
        let hold = c.resumeWindow > .zero && !draining.load(ordering: .relaxed) && !conn.isLeaving
        enum Outcome { case none, left(Member, [Member]), held(Member, [Member]) }
        let outcome = state.withLock { s -> Outcome in
            s.connections.removeValue(forKey: conn.id)
            guard let peerID, var m = s.peers[peerID], m.connection === conn else { return .none }
            if hold {
                let held = HeldSession(deadline: .now + c.resumeWindow, maxMessages: c.resumeQueueMessages,
                                       maxBytes: c.resumeQueueBytes) { [weak self] in
                    // Off the sender's path: the session ends as a leave.
                    Task { self?.endHeld(peerID, reason: "resume queue overflow") }
                }
                m.link = .held(held)
                s.update(m)
                return .held(m, s.rooms[m.room].map { $0.values.filter { $0.info.peerID != peerID } } ?? [])
            }
            guard let gone = s.remove(peerID) else { return .none }
            return .left(gone, Array(s.rooms[gone.room]?.values ?? [:].values))
        }
        switch outcome {
        case .none:
            break
        case .left(let member, let others):
            announceLeave(member.info, room: member.room, to: others)
        case .held(let member, let others):
            stats.heldSessions.add()
            announcePresence(member.info, room: member.room, away: true, to: others)
        }
    }

    /// `peer_away` / `peer_back` to the others in the room, here and on other instances.
    private func announcePresence(_ peer: PeerInfo, room: String, away: Bool, to others: [Member]) {
        let text = away ? ServerEvents.away(peer) : ServerEvents.back(peer)
        for o in others where o.send(text) { stats.sent(.presence) }
        backplane?.announcePresence(peer, room: room, away: away)
    }

    /// Ends a held session as a leave (its window ended, its queue overflowed, it was kicked or replaced).
    func endHeld(_ peerID: String, reason: String) {
        let result = state.withLock { s -> (Member, [Member])? in
            guard s.peers[peerID]?.held != nil, let m = s.remove(peerID) else { return nil }
            return (m, Array(s.rooms[m.room]?.values ?? [:].values))
        }
        guard let (member, others) = result else { return }
        stats.heldSessions.subtract()
        stats.heldExpired.add()
        logger.debug("held session ended", metadata: ["peer": "\(peerID)", "reason": "\(reason)"])
        announceLeave(member.info, room: member.room, to: others)
    }

    /// A peer is gone from its room: the others hear `left`, the TURN credentials minted for its session
    /// are revoked (which releases its allocations), then the hooks run.
    private func announceLeave(_ peer: PeerInfo, room: String, to others: [Member]) {
        let text = ServerEvents.left(peer)
        for o in others where o.send(text) { stats.sent(.left) }
        backplane?.announceLeave(peer, room: room)
        if !draining.load(ordering: .relaxed) {
            // Until its credentials could expire (a session that moved here from another instance has
            // none minted here to tell).
            credentials.sessions.revoke(session: peer.peerID, until: Date().addingTimeInterval(iceServers.credentialLifetime))
        }
        hooks.post(.init(kind: .left, room: room, peer: peer, others: others.map(\.info)))
    }

    /// Joins an authenticated socket to `room`; returns the peers already there (the roster).
    /// `welcome(roster)` is queued to the new peer before anyone can see it, so it always comes first.
    ///
    /// In a cluster the roster and the room's cap cover every instance; a peer of the same username on
    /// another instance (under `replace`) is left out of the roster: its own instance closes it when it
    /// hears of this join, which is the later one.
    func join(room: String, info: PeerInfo, connection: PeerConnection, resumeToken: String,
              welcome: ([PeerInfo]) -> String) throws(JoinError) -> [PeerInfo] {
        let c = configuration
        let peerID = info.peerID, username = info.username
        let stamp = JoinStamp(millis: Int64(Date().timeIntervalSince1970 * 1000), peerID: peerID)
        let member = Member(info: info, room: room, link: .live(connection), joined: stamp, resumeToken: resumeToken)
        let backplane = self.backplane
        let remote = backplane?.remotePeers(in: room) ?? []
        let remaining = c.duplicateUsername == .replace ? remote.filter { $0.info.username != username } : remote
        let result = state.withLock { s -> Result<([Member], [Member]), JoinError> in
            let roomPeers = s.rooms[room] ?? [:]
            let replaced = c.duplicateUsername == .replace ? roomPeers.values.filter { $0.info.username == username } : []
            guard c.maxPeersPerRoom == 0 || roomPeers.count - replaced.count + remaining.count < c.maxPeersPerRoom else {
                return .failure(.roomFull)
            }
            for r in replaced { _ = s.remove(r.info.peerID) }
            let others = Array(s.rooms[room]?.values ?? [:].values)
            if connection.send(welcome(others.map(\.info) + remaining.map(\.info))) { stats.sent(.authenticated) }
            s.rooms[room, default: [:]][peerID] = member
            s.peers[peerID] = member
            s.resumeTokens[resumeToken] = peerID
            return .success((others, replaced))
        }
        let (others, replaced) = try result.get()
        backplane?.announceJoin(LocalPeer(info: info, room: room, joined: stamp))
        for r in replaced {
            // Treated as leaving, then closed (a held one has no socket to close).
            if r.held != nil { stats.heldSessions.subtract() }
            announceLeave(r.info, room: room, to: others)
            r.connection?.close(finalEvent: ServerEvents.error(.replaced, "a newer session logged in as \(username)"),
                                reason: "replaced")
        }
        let text = ServerEvents.joined(info)
        for o in others where o.send(text) { stats.sent(.joined) }
        hooks.post(.init(kind: .joined, room: room, peer: info, others: others.map(\.info) + remaining.map(\.info)))
        return others.map(\.info) + remaining.map(\.info)
    }

    // MARK: Resume

    public enum ResumeError: Error, Equatable, Sendable {
        /// No held or live session has this token here (wrong, used, expired, or another room's).
        case unknownToken
    }

    /// A new resume token: 128 random bits in base64url (a cluster instance puts its id in front, so that
    /// another instance knows where the session is held).
    func newResumeToken() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let token = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return (backplane?.resumeTokenPrefix ?? "") + token
    }

    /// Moves the session that `token` resumes onto `connection` (same room): `resumed` with a new token and
    /// the roster, then the messages queued while it was away, in their order, all before any live message
    /// (they are written under the hub's lock). An old socket still open is closed (`resumed`). The others
    /// hear `peer_back` if it was away. Returns the peer and the number of messages replayed.
    func resume(token: String, room: String, connection: PeerConnection,
                event: (_ peerID: String, _ newToken: String, _ roster: [PeerInfo], _ replayed: Int) -> String)
        throws(ResumeError) -> (peer: PeerInfo, replayed: Int)
    {
        let remote = backplane?.remotePeers(in: room) ?? []
        let newToken = newResumeToken()
        let result = state.withLock { s -> (Member, Member, [Member], Int)? in
            guard let peerID = s.resumeTokens[token], var m = s.peers[peerID], m.room == room, m.resumeToken == token else { return nil }
            let before = m
            s.resumeTokens.removeValue(forKey: token)
            s.resumeTokens[newToken] = peerID
            let queued: [ByteBuffer]
            switch m.link {
            case .held(let h): queued = h.resume(into: connection)
            case .live: queued = []
            }
            m.link = .live(connection)
            m.resumeToken = newToken
            s.update(m)
            let others = s.rooms[room].map { $0.values.filter { $0.info.peerID != peerID } } ?? []
            if connection.send(event(peerID, newToken, others.map(\.info) + remote.map(\.info), queued.count)) {
                stats.sent(.resumed)
            }
            for q in queued { connection.send(q) }
            return (before, m, others, queued.count)
        }
        guard let (before, member, others, replayed) = result else { throw .unknownToken }
        stats.resumes.add()
        stats.replayedMessages.add(replayed)
        switch before.link {
        case .held:
            stats.heldSessions.subtract()
            announcePresence(member.info, room: room, away: false, to: others)
        case .live(let old):
            // The old socket is somehow still open (the client saw a drop the server did not).
            old.close(finalEvent: ServerEvents.error(.resumed, "this session was resumed on another connection"),
                      reason: "resumed elsewhere", code: .policyViolation)
        }
        return (member.info, replayed)
    }

    /// A held (or still live) session of this instance leaves it for another instance, where a socket
    /// presented its token: taken out of the hub without a `left` (it goes on elsewhere), its queued
    /// messages returned in order; what still arrives for it here goes to `forward`. Nil when the token
    /// does not resume a session of `room` here.
    public func handOver(token: String, room: String, forward: @escaping @Sendable (ByteBuffer) -> Bool)
        -> (peer: RemotePeer, queued: [ByteBuffer])?
    {
        let result = state.withLock { s -> (Member, [ByteBuffer])? in
            guard let peerID = s.resumeTokens[token], let m = s.peers[peerID], m.room == room, m.resumeToken == token,
                  let gone = s.remove(peerID) else { return nil }
            switch m.link {
            case .held(let h): return (gone, h.resume(successor: forward))
            case .live: return (gone, [])
            }
        }
        guard let (m, queued) = result else { return nil }
        switch m.link {
        case .held: stats.heldSessions.subtract()
        case .live(let old):
            old.close(finalEvent: ServerEvents.error(.resumed, "this session was resumed on another connection"),
                      reason: "resumed elsewhere", code: .policyViolation)
        }
        credentials.sessions.forget(session: m.info.peerID)
        stats.replayedMessages.add(queued.count)
        return (RemotePeer(info: m.info, room: m.room, instance: "", joined: m.joined), queued)
    }

    /// The other half of `handOver`, on the instance where the socket arrived: the session joins this
    /// hub on `connection` as it was (same peer id and join time), without a `joined`; `resumed` and the
    /// queued messages go out first; the others hear `peer_back`.
    public func adoptResumed(_ peer: RemotePeer, queued: [ByteBuffer], connection: PeerConnection,
                             event: (_ newToken: String, _ roster: [PeerInfo], _ replayed: Int) -> String) {
        let remote = (backplane?.remotePeers(in: peer.room) ?? []).filter { $0.info.peerID != peer.info.peerID }
        let newToken = newResumeToken()
        let member = Member(info: peer.info, room: peer.room, link: .live(connection), joined: peer.joined, resumeToken: newToken)
        let others = state.withLock { s -> [Member] in
            let others = Array(s.rooms[peer.room]?.values ?? [:].values)
            if connection.send(event(newToken, others.map(\.info) + remote.map(\.info), queued.count)) { stats.sent(.resumed) }
            for q in queued { connection.send(q) }
            s.rooms[peer.room, default: [:]][peer.info.peerID] = member
            s.peers[peer.info.peerID] = member
            s.resumeTokens[newToken] = peer.info.peerID
            return others
        }
        credentials.sessions.adopt(session: peer.info.peerID)
        stats.resumes.add()
        backplane?.announceMoved(peer.info, room: peer.room, joined: peer.joined)
        announcePresence(peer.info, room: peer.room, away: false, to: others)
    }

    /// Held sessions whose window has ended: they end as leaves.
    func expireHeld(now: ContinuousClock.Instant) {
        let expired = state.withLock { s in s.peers.values.compactMap { m in m.held.map { $0.deadline <= now ? m.info.peerID : nil } ?? nil } }
        for peerID in expired { endHeld(peerID, reason: "resume window ended") }
    }

    // MARK: Delivery

    public enum DeliveryResult: Equatable, Sendable {
        case delivered(Int)
        case unknownPeer
        /// The peer is on another instance of the cluster and the link to it is down.
        case unreachable
    }

    /// Sends a client's message to `to` in the same room, or to everyone else in the room for `*`.
    func deliver(_ text: consuming ByteBuffer, from peerID: String, room: String, to: String) -> DeliveryResult {
        if to == SignalingHub.broadcastAddress {
            let targets = state.withLock { s in s.rooms[room].map { Array($0.values) } ?? [] }
            var n = 0
            if let backplane, backplane.isLinked, !backplane.remotePeers(in: room).isEmpty {
                backplane.broadcast(text, room: room)
            }
            for t in targets where t.info.peerID != peerID && t.send(copy text) { n += 1 }
            stats.sent(.forwarded, n)
            return .delivered(n)
        }
        // Only the link leaves the lock (copying the whole member would retain its strings too).
        guard let target = state.withLock({ s in s.peers[to].flatMap { $0.room == room ? $0.link : nil } }) else {
            // On another instance of the cluster: passed on, in order, over the one link to it.
            guard let backplane, let remote = backplane.remotePeer(to), remote.room == room else { return .unknownPeer }
            guard backplane.isLinked else { return .unreachable }
            backplane.forward(text, to: remote)
            stats.sent(.forwarded)
            return .delivered(1)
        }
        let ok = target.send(text)  // the last use: owned, so framed in place
        if ok { stats.sent(.forwarded) }
        return .delivered(ok ? 1 : 0)
    }

    /// The `to` value that reaches every other peer in the sender's room.
    public static let broadcastAddress = "*"

    // MARK: Server API (Swift)

    /// Peers in `room` (on every instance of a cluster), in no particular order; empty for an unknown room.
    public func peers(in room: String) -> [PeerInfo] {
        localPeers(in: room) + (backplane?.remotePeers(in: room).map(\.info) ?? [])
    }

    func localPeers(in room: String) -> [PeerInfo] {
        state.withLock { s in s.rooms[room].map { $0.values.map(\.info) } ?? [] }
    }

    /// All rooms with their peer counts (on every instance of a cluster).
    public func rooms() -> [String: Int] {
        let local = state.withLock { s in s.rooms.mapValues(\.count) }
        guard let remote = backplane?.remoteRooms() else { return local }
        return local.merging(remote, uniquingKeysWith: +)
    }

    /// Sends `{"event":event,"data":data,"from":"server"}` to every peer in `room` (on every instance of a
    /// cluster); returns how many it went to. `dataJSON` must be JSON text (or nil for no data).
    @discardableResult
    public func publish(room: String, event: String, dataJSON: String?) -> Int {
        var n = publishLocally(room: room, event: event, dataJSON: dataJSON)
        if let backplane {
            let remote = backplane.remotePeers(in: room).count
            if remote > 0, backplane.isLinked {
                backplane.publish(room: room, event: event, dataJSON: dataJSON)
                n += remote
            }
        }
        return n
    }

    /// `publish` to this instance's peers only (what another instance asks of this one).
    @discardableResult
    public func publishLocally(room: String, event: String, dataJSON: String?) -> Int {
        let text = ServerEvents.fromServer(event: event, dataJSON: dataJSON)
        let targets = state.withLock { s in s.rooms[room].map { Array($0.values) } ?? [] }
        let n = targets.reduce(0) { $0 + ($1.send(text) ? 1 : 0) }
        stats.sent(.api, n)
        return n
    }

    /// Sends a server message to one peer (on any instance of a cluster); false when no such peer.
    @discardableResult
    public func send(to peerID: String, event: String, dataJSON: String?) -> Bool {
        if let ok = sendLocally(to: peerID, event: event, dataJSON: dataJSON) { return ok }
        guard let backplane, let remote = backplane.remotePeer(peerID), backplane.isLinked else { return false }
        backplane.send(to: remote, event: event, dataJSON: dataJSON)
        return true
    }

    /// `send` to a peer of this instance; nil when it has no such peer.
    @discardableResult
    public func sendLocally(to peerID: String, event: String, dataJSON: String?) -> Bool? {
        guard let target = state.withLock({ s in s.peers[peerID] }) else { return nil }
        let ok = target.send(ServerEvents.fromServer(event: event, dataJSON: dataJSON))
        if ok { stats.sent(.api) }
        return ok
    }

    /// Disconnects a peer on any instance (`error{code:"kicked"}`, then close). Its leave — `left` to the
    /// others, TURN credentials revoked, allocations released — follows as for any close. False when no
    /// such peer.
    @discardableResult
    public func kick(_ peerID: String, reason: String = "removed by the server") -> Bool {
        if kickLocally(peerID, reason: reason) { return true }
        guard let backplane, let remote = backplane.remotePeer(peerID), backplane.isLinked else { return false }
        backplane.kick(remote, reason: reason)
        return true
    }

    /// `kick` of a peer of this instance; false when it has no such peer.
    @discardableResult
    public func kickLocally(_ peerID: String, reason: String = "removed by the server") -> Bool {
        guard let target = state.withLock({ s in s.peers[peerID] }) else { return false }
        if let connection = target.connection {
            connection.close(finalEvent: ServerEvents.error(.kicked, reason), reason: "kicked")
        } else {
            endHeld(peerID, reason: "kicked")
        }
        return true
    }

    // MARK: Cluster (called by the backplane)

    /// This instance's peers, for a presence resync.
    public func localPeers() -> [LocalPeer] {
        state.withLock { s in s.peers.values.map { LocalPeer(info: $0.info, room: $0.room, joined: $0.joined) } }
    }

    /// A peer joined on another instance (the backplane has it already): the local peers of its room hear
    /// `joined`. Then the cluster-wide rules, applied the same way on every instance: past the room's cap
    /// the latest joins are refused (`room_full`), and under `replace` an older session of the username is
    /// `replaced`; each instance closes only its own peers.
    public func remoteJoined(_ peer: RemotePeer) {
        let c = configuration
        let remote = backplane?.remotePeers(in: peer.room) ?? [peer]
        let (members, evicted) = state.withLock { s -> ([Member], [(Member, SignalingErrorCode)]) in
            let members = Array(s.rooms[peer.room]?.values ?? [:].values)
            var evicted: [(Member, SignalingErrorCode)] = []
            if c.duplicateUsername == .replace {
                for m in members where m.info.username == peer.info.username && m.joined < peer.joined { evicted.append((m, .replaced)) }
            }
            if c.maxPeersPerRoom > 0 {
                let gone = Set(evicted.map(\.0.info.peerID))
                let stamps = members.filter { !gone.contains($0.info.peerID) }.map(\.joined) + remote.map(\.joined)
                if stamps.count > c.maxPeersPerRoom {
                    let admitted = Set(stamps.sorted().prefix(c.maxPeersPerRoom))
                    for m in members where !gone.contains(m.info.peerID) && !admitted.contains(m.joined) { evicted.append((m, .roomFull)) }
                }
            }
            return (members, evicted)
        }
        let leaving = Set(evicted.map(\.0.info.peerID))
        let text = ServerEvents.joined(peer.info)
        for m in members where !leaving.contains(m.info.peerID) && m.send(text) { stats.sent(.joined) }
        for (m, code) in evicted {
            let why = code == .replaced ? "a newer session logged in as \(m.info.username)"
                : "room \(peer.room) already has \(c.maxPeersPerRoom) peers"
            if let connection = m.connection {
                connection.close(finalEvent: ServerEvents.error(code, why), reason: code.rawValue)
            } else {
                endHeld(m.info.peerID, reason: code.rawValue)
            }
        }
    }

    /// A peer on another instance left: the local peers of its room hear `left`.
    public func remoteLeft(_ peer: PeerInfo, room: String) {
        let text = ServerEvents.left(peer)
        let members = state.withLock { s in Array(s.rooms[room]?.values ?? [:].values) }
        for m in members where m.send(text) { stats.sent(.left) }
    }

    /// A peer on another instance is away (its socket went, its session is held there) or back.
    public func remotePresence(_ peer: PeerInfo, room: String, away: Bool) {
        let text = away ? ServerEvents.away(peer) : ServerEvents.back(peer)
        let members = state.withLock { s in Array(s.rooms[room]?.values ?? [:].values) }
        for m in members where m.send(text) { stats.sent(.presence) }
    }

    /// A message from a peer on another instance for `peerID` here; false when there is no such peer.
    @discardableResult
    public func deliverFromRemote(_ text: consuming ByteBuffer, to peerID: String) -> Bool {
        guard let target = state.withLock({ s in s.peers[peerID]?.link }) else { return false }
        let ok = target.send(text)
        if ok { stats.sent(.forwarded) }
        return ok
    }

    /// A broadcast from a peer on another instance to every local peer of `room`; returns how many got it.
    @discardableResult
    public func broadcastFromRemote(_ text: ByteBuffer, room: String) -> Int {
        let targets = state.withLock { s in s.rooms[room].map { Array($0.values) } ?? [] }
        var n = 0
        for t in targets where t.send(text) { n += 1 }
        stats.sent(.forwarded, n)
        return n
    }

    /// Tells every open socket `event` and closes it (server shutdown).
    public func closeAll(finalEvent: String?, reason: String) {
        let all = state.withLock { Array($0.connections.values) }
        for c in all { c.close(finalEvent: finalEvent, reason: reason) }
    }

    /// Graceful shutdown: every socket is told `shutdown` and closed; the sessions' TURN credentials
    /// stay valid (not revoked) so relayed calls continue while the TURN half drains.
    public func shutdown() {
        draining.store(true, ordering: .relaxed)
        let n = connectionCount
        closeAll(finalEvent: ServerEvents.shutdown, reason: "server shutting down")
        stats.sent(.shutdown, n)
    }

    /// Applies the reloadable part of `new` (configuration reload): limits, timeouts, keepalive, the
    /// duplicate-username policy, the API token, whether passwords log in and the ICE credential lifetime.
    public func updateLimits(from new: SignalingConfiguration) {
        settings.withLock { c in
            c.authTimeout = new.authTimeout
            c.httpTimeout = new.httpTimeout
            c.maxMessageSize = new.maxMessageSize
            c.maxPeersPerRoom = new.maxPeersPerRoom
            c.maxConnections = new.maxConnections
            c.keepaliveInterval = new.keepaliveInterval
            c.idleTimeout = new.idleTimeout
            c.duplicateUsername = new.duplicateUsername
            c.outboundBufferLimit = new.outboundBufferLimit
            c.abuseLimit = new.abuseLimit
            c.abuseWindow = new.abuseWindow
            c.apiToken = new.apiToken
            c.adminAllowed = new.adminAllowed
            c.maxEventStreams = new.maxEventStreams
            c.trustedProxies = new.trustedProxies
            c.resumeWindow = new.resumeWindow
            c.resumeQueueMessages = new.resumeQueueMessages
            c.resumeQueueBytes = new.resumeQueueBytes
            c.passwordLogins = new.passwordLogins
        }
        iceServerSettings.withLock { $0.credentialLifetime = new.iceServers.credentialLifetime }
    }

    /// The hub's gauges and the signaling counters, declared once (`/metrics`, `/api/stats`, the README).
    public var metrics: [Metric] {
        [
            .value("webrtc_signaling_connections", .gauge, json: "connections", help: "open WebSocket connections") { self.connectionCount },
            .value("webrtc_signaling_rooms", .gauge, json: "rooms", help: "rooms with a peer on this instance") { self.roomCount },
            .value("webrtc_signaling_peers", .gauge, json: "peers", help: "authenticated peers on this instance, held ones included") {
                self.peerCount
            },
        ] + stats.metrics
    }

    public var connectionCount: Int { state.withLock { $0.connections.count } }
    public var peerCount: Int { state.withLock { $0.peers.count } }
    public var roomCount: Int { state.withLock { $0.rooms.count } }
    public var isShuttingDown: Bool { draining.load(ordering: .relaxed) }

    // MARK: Timers

    /// Closes sockets past the authentication deadline or the idle timeout. Called about once a second.
    func sweep(now: ContinuousClock.Instant = .now) {
        expireHeld(now: now)
        let c = configuration
        let all = state.withLock { Array($0.connections.values) }
        for conn in all {
            if let closing = conn.pendingClose {
                // Closing but still here: the peer ignores our close frame or stopped reading.
                if now - closing.at > c.closeGrace { conn.forceClose() }
            } else if !conn.isAuthenticated, now - conn.opened >= c.authTimeout {
                stats.authTimeouts.add()
                stats.sent(.unauthorized)
                conn.close(finalEvent: ServerEvents.unauthorized, reason: "authentication timeout")
            } else if c.idleTimeout > .zero, conn.idle(now: now) >= c.idleTimeout {
                conn.close(finalEvent: nil, reason: "idle timeout")
            } else if c.keepaliveInterval > .zero, conn.sincePing(now: now) >= c.keepaliveInterval {
                // RFC 6455 §5.5.2 ping; the previous one unanswered means the peer is gone.
                if conn.awaitingPong.load(ordering: .relaxed) {
                    conn.close(finalEvent: nil, reason: "keepalive timeout", code: .goingAway, keepsSession: true)
                } else {
                    conn.ping(now: now)
                }
            }
        }
    }
}
