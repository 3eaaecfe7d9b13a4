import Auth
import Foundation
import Logging
import NIOCore
import Synchronization

/// Rooms → peers, with one owner: every change happens under one lock, and delivery happens outside it
/// through each peer's bounded queue, so a sender never waits for a receiver.
///
/// This is also the Swift API for apps that embed the server: list a room, publish to it, send to one
/// peer, kick one — the `/api/` routes call exactly these.
public final class SignalingHub: Sendable {
    public enum JoinError: Error, Equatable, Sendable {
        case roomFull
        case serverFull
    }

    struct Member: Sendable {
        let info: PeerInfo
        let room: String
        let connection: PeerConnection
    }

    private struct State {
        var rooms: [String: [String: Member]] = [:]
        var peers: [String: Member] = [:]
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
    public let credentials: CredentialStore
    /// Set on shutdown: sessions closing then keep their TURN credentials, so calls relaying through
    /// this process's TURN server run on for its drain period.
    private let draining = Atomic<Bool>(false)
    public let stats = SignalingStats()
    let hooks: HookDispatcher
    let logger: Logger
    private let state = Mutex(State())
    /// Each event loop's end-of-tick flush of the connections written to (`PeerConnection.send`).
    private let flushers = TickFlushers()
    private let iceServerSettings: Mutex<IceServerSettings>

    /// What `authenticated` lists; the executable updates the ports once the TURN listeners are bound.
    public var iceServers: IceServerSettings {
        get { iceServerSettings.withLock { $0 } }
        set { iceServerSettings.withLock { $0 = newValue } }
    }

    public init(configuration: SignalingConfiguration, credentials: CredentialStore,
                hooks: [any SignalingHooks] = [], logger: Logger) {
        self.settings = Mutex(configuration)
        self.credentials = credentials
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
        if conn == nil { stats.rejectedConnections.add(1, ordering: .relaxed) }
        return conn
    }

    /// A connection outside the hub's count, only to tell a client why it is refused.
    func refusedConnection(channel: any Channel) -> PeerConnection {
        PeerConnection(id: 0, source: nil, channel: channel, stats: stats, flusher: flushers.flusher(for: channel.eventLoop))
    }

    /// Removes the socket, and its peer if it had joined: the others get `left`, the session's TURN
    /// credentials are revoked (which releases its allocations), then the hooks run.
    func closed(_ conn: PeerConnection, peerID: String?) {
        let (member, others) = state.withLock { s -> (Member?, [Member]) in
            s.connections.removeValue(forKey: conn.id)
            guard let peerID, let m = s.peers[peerID], m.connection === conn else { return (nil, []) }
            s.peers.removeValue(forKey: peerID)
            s.rooms[m.room]?.removeValue(forKey: peerID)
            let others = Array(s.rooms[m.room]?.values ?? [:].values)
            if s.rooms[m.room]?.isEmpty == true { s.rooms.removeValue(forKey: m.room) }
            return (m, others)
        }
        guard let member else { return }
        announceLeave(member.info, room: member.room, to: others)
    }

    /// A peer is gone from its room: the others hear `left`, the TURN credentials minted for its session
    /// are revoked (which releases its allocations), then the hooks run.
    private func announceLeave(_ peer: PeerInfo, room: String, to others: [Member]) {
        let text = ServerEvents.left(peer)
        for o in others where o.connection.send(text) { stats.sent(.left) }
        if !draining.load(ordering: .relaxed) { credentials.sessions.revoke(session: peer.peerID) }
        hooks.post(.init(kind: .left, room: room, peer: peer, others: others.map(\.info)))
    }

    /// Joins an authenticated socket to `room`; returns the peers already there (the roster).
    /// `welcome(roster)` is queued to the new peer before anyone can see it, so it always comes first.
    func join(room: String, username: String, peerID: String, connection: PeerConnection,
              welcome: ([PeerInfo]) -> String) throws(JoinError) -> [PeerInfo] {
        let c = configuration
        let info = PeerInfo(peerID: peerID, username: username)
        let member = Member(info: info, room: room, connection: connection)
        let result = state.withLock { s -> Result<([Member], [Member]), JoinError> in
            var roomPeers = s.rooms[room] ?? [:]
            let replaced = c.duplicateUsername == .replace ? roomPeers.values.filter { $0.info.username == username } : []
            guard c.maxPeersPerRoom == 0 || roomPeers.count - replaced.count < c.maxPeersPerRoom else {
                return .failure(.roomFull)
            }
            for r in replaced {
                roomPeers.removeValue(forKey: r.info.peerID)
                s.peers.removeValue(forKey: r.info.peerID)
            }
            let others = Array(roomPeers.values)
            if connection.send(welcome(others.map(\.info))) { stats.sent(.authenticated) }
            roomPeers[peerID] = member
            s.rooms[room] = roomPeers
            s.peers[peerID] = member
            return .success((others, replaced))
        }
        let (others, replaced) = try result.get()
        for r in replaced {
            // Treated as leaving, then closed.
            announceLeave(r.info, room: room, to: others)
            r.connection.close(finalEvent: ServerEvents.error(.replaced, "a newer session logged in as \(username)"),
                               reason: "replaced")
        }
        let text = ServerEvents.joined(info)
        for o in others where o.connection.send(text) { stats.sent(.joined) }
        hooks.post(.init(kind: .joined, room: room, peer: info, others: others.map(\.info)))
        return others.map(\.info)
    }

    // MARK: Delivery

    public enum DeliveryResult: Equatable, Sendable {
        case delivered(Int)
        case unknownPeer
    }

    /// Sends a client's message to `to` in the same room, or to everyone else in the room for `*`.
    func deliver(_ text: consuming ByteBuffer, from peerID: String, room: String, to: String) -> DeliveryResult {
        if to == SignalingHub.broadcastAddress {
            let targets = state.withLock { s in s.rooms[room].map { Array($0.values) } ?? [] }
            var n = 0
            for t in targets where t.info.peerID != peerID && t.connection.send(copy text) { n += 1 }
            stats.sent(.forwarded, n)
            return .delivered(n)
        }
        // Only the connection leaves the lock (copying the whole member would retain its strings too).
        guard let target = state.withLock({ s in s.peers[to].flatMap { $0.room == room ? $0.connection : nil } })
        else { return .unknownPeer }
        let ok = target.send(text)  // the last use: owned, so framed in place
        if ok { stats.sent(.forwarded) }
        return .delivered(ok ? 1 : 0)
    }

    /// The `to` value that reaches every other peer in the sender's room.
    public static let broadcastAddress = "*"

    // MARK: Server API (Swift)

    /// Peers in `room`, in no particular order; empty for an unknown room.
    public func peers(in room: String) -> [PeerInfo] {
        state.withLock { s in s.rooms[room].map { $0.values.map(\.info) } ?? [] }
    }

    /// All rooms with their peer counts.
    public func rooms() -> [String: Int] {
        state.withLock { s in s.rooms.mapValues(\.count) }
    }

    /// Sends `{"event":event,"data":data,"from":"server"}` to every peer in `room`; returns how many got it.
    /// `dataJSON` must be JSON text (or nil for no data).
    @discardableResult
    public func publish(room: String, event: String, dataJSON: String?) -> Int {
        let text = ServerEvents.fromServer(event: event, dataJSON: dataJSON)
        let targets = state.withLock { s in s.rooms[room].map { Array($0.values) } ?? [] }
        let n = targets.reduce(0) { $0 + ($1.connection.send(text) ? 1 : 0) }
        stats.sent(.api, n)
        return n
    }

    /// Sends a server message to one peer; false when no such peer.
    @discardableResult
    public func send(to peerID: String, event: String, dataJSON: String?) -> Bool {
        guard let target = state.withLock({ s in s.peers[peerID] }) else { return false }
        let ok = target.connection.send(ServerEvents.fromServer(event: event, dataJSON: dataJSON))
        if ok { stats.sent(.api) }
        return ok
    }

    /// Disconnects a peer (`error{code:"kicked"}`, then close). Its leave — `left` to the others, TURN
    /// credentials revoked, allocations released — follows as for any close. False when no such peer.
    @discardableResult
    public func kick(_ peerID: String, reason: String = "removed by the server") -> Bool {
        guard let target = state.withLock({ s in s.peers[peerID] }) else { return false }
        target.connection.close(finalEvent: ServerEvents.error(.kicked, reason), reason: "kicked")
        return true
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
    /// duplicate-username policy, the API token and the ICE credential lifetime.
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
        }
        iceServerSettings.withLock { $0.credentialLifetime = new.iceServers.credentialLifetime }
    }

    public var connectionCount: Int { state.withLock { $0.connections.count } }
    public var peerCount: Int { state.withLock { $0.peers.count } }
    public var roomCount: Int { state.withLock { $0.rooms.count } }
    public var isShuttingDown: Bool { draining.load(ordering: .relaxed) }

    // MARK: Timers

    /// Closes sockets past the authentication deadline or the idle timeout. Called about once a second.
    func sweep(now: ContinuousClock.Instant = .now) {
        let c = configuration
        let all = state.withLock { Array($0.connections.values) }
        for conn in all {
            if let closing = conn.pendingClose {
                // Closing but still here: the peer ignores our close frame or stopped reading.
                if now - closing.at > c.closeGrace { conn.forceClose() }
            } else if !conn.isAuthenticated, now - conn.opened >= c.authTimeout {
                stats.authTimeouts.add(1, ordering: .relaxed)
                stats.sent(.unauthorized)
                conn.close(finalEvent: ServerEvents.unauthorized, reason: "authentication timeout")
            } else if c.idleTimeout > .zero, conn.idle(now: now) >= c.idleTimeout {
                conn.close(finalEvent: nil, reason: "idle timeout")
            } else if c.keepaliveInterval > .zero, conn.sincePing(now: now) >= c.keepaliveInterval {
                // RFC 6455 §5.5.2 ping; the previous one unanswered means the peer is gone.
                if conn.awaitingPong.load(ordering: .relaxed) {
                    conn.close(finalEvent: nil, reason: "keepalive timeout", code: .goingAway)
                } else {
                    conn.ping(now: now)
                }
            }
        }
    }
}
