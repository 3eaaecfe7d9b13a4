import Auth
import Foundation
import Logging
import ServerMetrics
import NIOCore
import ServiceLifecycle
import Signaling
import Synchronization

/// How this instance takes part in a cluster.
public struct ClusterConfiguration: Sendable {
    public enum IceServerChoice: String, Sendable, CaseIterable {
        /// `ice_servers` name this instance's TURN.
        case own = "self"
        /// `ice_servers` name the TURN of the instance with the lowest allocations ÷ capacity (this one on a tie).
        case leastLoaded = "least_loaded"
        /// `ice_servers` name the least loaded TURN-only instance (`signaling.enabled: false`): signaling and
        /// TURN on separate machines. This instance's own TURN only while no TURN-only instance is heard from.
        case turnOnly = "turn_only"
    }

    public var nats: NATSClientConfiguration
    /// Instances with the same name form one service (a NATS subject token).
    public var name = "webrtc"
    /// This instance's id, unique in the cluster (a NATS subject token).
    public var instanceID: String
    /// An instance not heard from for this long is declared dead: its peers are `left` and their TURN
    /// credentials revoked everywhere.
    public var instanceTimeout: Duration = .seconds(5)
    public var heartbeatInterval: Duration = .seconds(1)
    public var iceServers: IceServerChoice = .own
    /// How long revoked sessions are remembered when the exact expiry is unknown (a dead instance's
    /// sessions): the longest lifetime minted credentials have.
    public var credentialLifetime: TimeInterval = 86_400
    /// What this instance tells the others about itself (its TURN endpoint is set once bound).
    public var advert: InstanceAdvert

    public init(nats: NATSClientConfiguration, instanceID: String, advert: InstanceAdvert) {
        self.nats = nats
        self.instanceID = instanceID
        self.advert = advert
    }
}

/// Counters of the cluster (read by /metrics and /api/stats).
public final class ClusterStats: Sendable {
    /// Directed messages sent to peers on other instances, and received for peers here.
    public let forwarded = StatCounter()
    public let received = StatCounter()
    /// Received for a peer that is no longer here (it left meanwhile): dropped.
    public let undeliverable = StatCounter()
    public let broadcastsOut = StatCounter()
    public let broadcastsIn = StatCounter()
    /// Instances declared dead (not heard from for cluster.instance_timeout).
    public let deadInstances = StatCounter()
    /// Presence resyncs (each time the NATS link came up).
    public let resyncs = StatCounter()
    /// Cluster messages that could not be read: dropped.
    public let malformed = StatCounter()

    public init() {}

    /// Declared once: `/metrics` and the `messages` object of the cluster in `/api/stats`.
    public var metrics: [Metric] {
        [
            Metric("webrtc_cluster_messages_total", .counter, labels: ["kind"],
                   help: "messages between instances, by `kind` (`forwarded`, `received`, `undeliverable`, `broadcast_out`, `broadcast_in`)") {
                [("forwarded", self.forwarded), ("received", self.received), ("undeliverable", self.undeliverable),
                 ("broadcast_out", self.broadcastsOut), ("broadcast_in", self.broadcastsIn)].map { .init([("kind", $0.0)], $0.1.value) }
            },
            .counter(nil, json: "forwarded", help: "", forwarded),
            .counter(nil, json: "received", help: "", received),
            .counter(nil, json: "undeliverable", help: "", undeliverable),
            .counter(nil, json: "broadcasts_out", help: "", broadcastsOut),
            .counter(nil, json: "broadcasts_in", help: "", broadcastsIn),
            .counter("webrtc_cluster_dead_instances_total", json: "dead_instances", help: "instances declared dead", deadInstances),
            .counter("webrtc_cluster_resyncs_total", json: "resyncs", help: "presence resyncs (each time the NATS link came up)", resyncs),
            .counter(nil, json: "malformed", help: "", malformed),
        ]
    }
}

/// One instance of the cluster as the dashboard shows it.
public struct ClusterInstanceStatus: Sendable, Codable {
    public let id: String
    public let address: String
    public let turn: String?
    public let peers: Int
    public let allocations: Int
    /// Seconds since it was last heard from (0 for this instance).
    public let last_seen: Double
    public let this: Bool
}

/// This instance's part in a cluster: the NATS link, presence (heartbeats, joins, leaves, resyncs, dead
/// instances), revocations of TURN credentials, and the hub's window on the other instances
/// (`SignalingBackplane`). Each instance owns its own connections; only events cross.
///
/// Failure, in short (docs/clustering.md has it in full):
/// - an instance that stops being heard from for `instanceTimeout` is declared dead by each of the
///   others: its peers are `left` in their rooms and their TURN credentials refused;
/// - a graceful stop hands its peers' `left` over at once and, after its TURN drain, revokes their
///   credentials and says goodbye;
/// - while this instance's NATS link is down it serves its own peers (directed messages to remote peers
///   get `peer_unreachable`), expires no one, and on reconnecting resyncs presence with everyone.
public final class ClusterNode: Service, SignalingBackplane, Sendable {
    public let configuration: ClusterConfiguration
    public let client: NATSClient
    public let stats = ClusterStats()
    let directory = ClusterDirectory()
    let hub: SignalingHub
    let credentials: CredentialStore
    let logger: Logger
    /// Random per process: tells a restarted instance, or a second one with the same id, from this one.
    let boot: String
    let started: Int64
    private let load: @Sendable () -> (allocations: Int, capacity: Int)
    private let onFatal: @Sendable (String) -> Void
    private let linked = Atomic<Bool>(false)
    private let turn = Mutex<WireTurnEndpoint?>(nil)
    private let relay: EventRelay
    private let subjectAll: String
    private let subjectMine: String
    /// Resume requests this instance sent, by id, waiting for an answer.
    private let pendingResumes = Mutex<[String: @Sendable ((peer: RemotePeer, queued: [ByteBuffer])?) -> Void]>([:])
    /// Peers that moved from this instance to another by a resume, and where: a message that still
    /// arrives here for one (sent before its sender heard of the move) is passed on.
    private let movedAway = Mutex<[String: (instance: String, at: ContinuousClock.Instant)]>([:])

    /// `load`: this instance's TURN allocations and capacity, for heartbeats. `onFatal`: the process cannot
    /// go on (another instance has this one's id).
    public init(configuration: ClusterConfiguration, hub: SignalingHub, credentials: CredentialStore, eventLoop: EventLoop,
                logger: Logger, load: @escaping @Sendable () -> (allocations: Int, capacity: Int),
                onFatal: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.hub = hub
        self.credentials = credentials
        self.logger = logger
        self.load = load
        self.onFatal = onFatal
        boot = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        started = Int64(Date().timeIntervalSince1970 * 1000)
        subjectAll = ClusterWire.subjectAll(configuration.name)
        subjectMine = ClusterWire.subjectTo(configuration.name, configuration.instanceID)
        var nats = configuration.nats
        nats.echo = false  // an instance never needs what it published itself
        nats.name = "webrtc-server \(configuration.instanceID)"
        let relay = EventRelay()
        self.relay = relay
        client = NATSClient(configuration: nats, eventLoop: eventLoop, logger: logger) { relay.forward($0) }
        turn.withLock { $0 = configuration.advert.turn }
    }

    public var instanceID: String { configuration.instanceID }

    /// A valid cluster name or instance id: letters, digits, `-` and `_` (they are NATS subject tokens).
    public static func isValidToken(_ s: String) -> Bool { ClusterWire.isToken(s) }

    /// `s` made into a valid token (a host name as the default instance id): other characters become `-`.
    public static func token(from s: String) -> String {
        let mapped = String(s.map { c in c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_") ? c : "-" }.prefix(64))
        return mapped.isEmpty ? "instance" : mapped
    }

    /// This instance's TURN endpoint as clients reach it (known once the listeners are bound).
    public func setTurnEndpoint(_ e: TurnEndpoint) { turn.withLock { $0 = WireTurnEndpoint(e) } }

    // MARK: Service

    public func run() async throws {
        relay.set { [self] event in linkEvent(event) }
        client.subscribe(subjectAll) { [self] in received($0) }
        client.subscribe(subjectMine) { [self] in received($0) }
        credentials.sessions.onRevoke { [self] session, origin in
            if origin == .local { publishRevocations([session: Int64(Date().timeIntervalSince1970 + configuration.credentialLifetime)]) }
        }
        hub.attach(self)
        logger.info("cluster: joining", metadata: [
            "cluster": "\(configuration.name)", "instance": "\(instanceID)",
            "nats": "\(configuration.nats.servers.map(\.description).joined(separator: ","))",
        ])
        client.start()
        await withGracefulShutdownHandler {
            var lastBeat = ContinuousClock.now - configuration.heartbeatInterval
            while !Task.isCancelled, !Task.isShuttingDownGracefully {
                let now = ContinuousClock.now
                if now - lastBeat >= configuration.heartbeatInterval {
                    lastBeat = now
                    if isLinked { publishControl(makeControl(.heartbeat), to: subjectAll) }
                }
                sweep(now: now)
                try? await Task.sleep(for: configuration.heartbeatInterval / 4)
            }
        } onGracefulShutdown: {}
        await handOver()
    }

    /// A graceful stop, after the signaling half closed its sockets (their `left` went out) and TURN
    /// drained: the sessions' credentials are revoked everywhere, and the others forget this instance.
    func handOver() async {
        for session in credentials.sessions.liveSessions { credentials.sessions.revoke(session: session) }
        publishControl(makeControl(.goodbye), to: subjectAll)
        await client.close()
        logger.info("cluster: left", metadata: ["instance": "\(instanceID)"])
    }

    // MARK: Link

    private func linkEvent(_ event: NATSClient.Event) {
        switch event {
        case .connected:
            linked.store(true, ordering: .relaxed)
            stats.resyncs.add()
            // Nothing could be heard while the link was down: everyone gets a fresh timeout, then presence
            // is exchanged in full (this instance's state to all, everyone's state to this one).
            directory.restartClocks(now: .now)
            publishControl(makeState(), to: subjectAll)
            publishControl(makeControl(.sync), to: subjectAll)
            publishControl(makeControl(.heartbeat), to: subjectAll)
        case .disconnected:
            linked.store(false, ordering: .relaxed)
            logger.warning("cluster: NATS link down; serving this instance's peers only until it is back")
        case .serverError:
            break
        }
    }

    /// Declares dead the instances not heard from for `instanceTimeout` (only while the link is up: with
    /// it down, silence says nothing).
    private func sweep(now: ContinuousClock.Instant) {
        // Everyone has heard of a move long before this: nothing more is passed on after a minute.
        movedAway.withLock { $0 = $0.filter { now - $0.value.at < .seconds(60) } }
        guard isLinked else { return }
        for id in directory.silent(since: now - configuration.instanceTimeout) {
            let change = directory.forget(id)
            stats.deadInstances.add()
            logger.warning("cluster: instance not heard from; declared dead", metadata: [
                "instance": "\(id)", "peers": "\(change.left.count)",
            ])
            apply(change)
            let until = Date().addingTimeInterval(configuration.credentialLifetime)
            for p in change.left { credentials.sessions.revokeRemote(session: p.info.peerID, until: until) }
        }
    }

    // MARK: Receiving

    private func received(_ message: NATSMessage) {
        switch ClusterWire.decode(message.payload) {
        case .directed(let room, let peer, let body)?:
            stats.received.add()
            if !hub.deliverFromRemote(body, to: peer) {
                if let to = movedAway.withLock({ $0[peer]?.instance }) {
                    client.publish(ClusterWire.subjectTo(configuration.name, to), head: ClusterWire.directedHead(room: room, to: peer), body)
                } else {
                    stats.undeliverable.add()
                }
            }
        case .broadcast(let room, let body)?:
            stats.broadcastsIn.add()
            hub.broadcastFromRemote(body, room: room)
        case .control(let c)?:
            control(c)
        case nil:
            stats.malformed.add()
        }
    }

    private func control(_ c: ClusterControl) {
        if c.instance == instanceID {
            guard c.boot != boot else { return }
            duplicate(c)
            return
        }
        apply(directory.heard(from: c.instance, boot: c.boot, started: c.started_ms,
                              advert: c.type == .heartbeat || c.type == .state ? c.advert : nil, now: .now))
        switch c.type {
        case .heartbeat:
            break
        case .joined:
            if let p = c.peer { apply(directory.join(p.remote(on: c.instance))) }
        case .left:
            if let p = c.peer { apply(directory.leave(p.peer_id)) }
        case .state:
            apply(directory.replace(instance: c.instance, with: (c.peers ?? []).map { $0.remote(on: c.instance) }))
            revokeRemote(c.revoked)
        case .sync:
            publishControl(makeState(), to: ClusterWire.subjectTo(configuration.name, c.instance))
        case .goodbye:
            apply(directory.forget(c.instance))
            logger.info("cluster: instance left", metadata: ["instance": "\(c.instance)"])
        case .revoke:
            revokeRemote(c.revoked)
        case .publish:
            if let room = c.room, let event = c.event { hub.publishLocally(room: room, event: event, dataJSON: c.data) }
        case .send:
            if let target = c.target, let event = c.event { hub.sendLocally(to: target, event: event, dataJSON: c.data) }
        case .kick:
            if let target = c.target { hub.kickLocally(target, reason: c.reason ?? "removed by the server") }
        case .away, .back:
            if let p = c.peer { hub.remotePresence(p.info, room: p.room, away: c.type == .away) }
        case .resume_request:
            if let token = c.token, let room = c.room, let request = c.request { handOver(token: token, room: room, request: request, to: c.instance) }
        case .resume_grant:
            if let request = c.request, let p = c.peer {
                let done = pendingResumes.withLock { $0.removeValue(forKey: request) }
                done?((p.remote(on: instanceID), (c.queued ?? []).map { ByteBuffer(string: $0) }))
            }
        case .resume_denied:
            if let request = c.request { pendingResumes.withLock { $0.removeValue(forKey: request) }?(nil) }
        case .moved:
            if let p = c.peer { directory.move(p.remote(on: c.instance)) }
        }
    }

    /// Another process uses this instance's id. The one that started later refuses to go on.
    private func duplicate(_ c: ClusterControl) {
        let theirs = (c.started_ms, c.boot), mine = (started, boot)
        if theirs < mine {
            let message = "cluster.instance_id '\(instanceID)' is already in use by another instance (started at "
                + "\(Date(timeIntervalSince1970: Double(c.started_ms) / 1000)), boot \(c.boot)); refusing to join the cluster"
            logger.critical("cluster: \(message)")
            onFatal(message)
        } else {
            logger.error("cluster: another instance started with this cluster.instance_id '\(instanceID)'; it will refuse to run")
        }
    }

    private func apply(_ change: ClusterDirectory.Change) {
        for p in change.left { hub.remoteLeft(p.info, room: p.room) }
        for p in change.joined { hub.remoteJoined(p) }
    }

    private func revokeRemote(_ revoked: [String: Int64]?) {
        for (session, until) in revoked ?? [:] {
            credentials.sessions.revokeRemote(session: session, until: Date(timeIntervalSince1970: Double(until)))
        }
    }

    // MARK: Sending

    private func makeControl(_ kind: ClusterControl.Kind) -> ClusterControl {
        var c = ClusterControl(type: kind, instance: instanceID, boot: boot, started: started)
        if kind == .heartbeat || kind == .state { c.advert = advert() }
        return c
    }

    private func makeState() -> ClusterControl {
        var c = makeControl(.state)
        c.peers = hub.localPeers().map(WirePeer.init)
        c.revoked = credentials.sessions.activeRevocations.mapValues { Int64($0.timeIntervalSince1970) }
        return c
    }

    private func advert() -> InstanceAdvert {
        var a = configuration.advert
        let l = load()
        a.turn = turn.withLock { $0 }
        a.peers = hub.localPeers().count
        a.allocations = l.allocations
        a.capacity = l.capacity
        return a
    }

    private func publishControl(_ c: ClusterControl, to subject: String) {
        client.publish(subject, ClusterWire.control(c))
    }

    private func publishRevocations(_ revoked: [String: Int64]) {
        var c = makeControl(.revoke)
        c.revoked = revoked
        publishControl(c, to: subjectAll)
    }

    // MARK: SignalingBackplane

    public func remotePeers(in room: String) -> [RemotePeer] { directory.peers(in: room) }
    public func remotePeer(_ peerID: String) -> RemotePeer? { directory.peer(peerID) }
    public func remoteRooms() -> [String: Int] { directory.roomCounts() }
    public var isLinked: Bool { linked.load(ordering: .relaxed) }

    public func announceJoin(_ peer: LocalPeer) {
        var c = makeControl(.joined)
        c.peer = WirePeer(peer)
        publishControl(c, to: subjectAll)
    }

    public func announceLeave(_ peer: PeerInfo, room: String) {
        var c = makeControl(.left)
        c.peer = WirePeer(peer: peer, room: room, joinedMillis: 0)
        publishControl(c, to: subjectAll)
    }

    public func forward(_ message: ByteBuffer, to peer: RemotePeer) {
        stats.forwarded.add()
        client.publish(ClusterWire.subjectTo(configuration.name, peer.instance),
                       head: ClusterWire.directedHead(room: peer.room, to: peer.info.peerID), message)
    }

    public func broadcast(_ message: ByteBuffer, room: String) {
        stats.broadcastsOut.add()
        client.publish(subjectAll, head: ClusterWire.broadcastHead(room: room), message)
    }

    public func publish(room: String, event: String, dataJSON: String?) {
        var c = makeControl(.publish)
        c.room = room
        c.event = event
        c.data = dataJSON
        publishControl(c, to: subjectAll)
    }

    public func send(to peer: RemotePeer, event: String, dataJSON: String?) {
        var c = makeControl(.send)
        c.target = peer.info.peerID
        c.event = event
        c.data = dataJSON
        publishControl(c, to: ClusterWire.subjectTo(configuration.name, peer.instance))
    }

    public func kick(_ peer: RemotePeer, reason: String) {
        var c = makeControl(.kick)
        c.target = peer.info.peerID
        c.reason = reason
        publishControl(c, to: ClusterWire.subjectTo(configuration.name, peer.instance))
    }

    public func announcePresence(_ peer: PeerInfo, room: String, away: Bool) {
        var c = makeControl(away ? .away : .back)
        c.peer = WirePeer(peer: peer, room: room, joinedMillis: 0)
        publishControl(c, to: subjectAll)
    }

    public var resumeTokenPrefix: String { instanceID + "." }

    public func requestResume(token: String, room: String,
                              completion: @escaping @Sendable ((peer: RemotePeer, queued: [ByteBuffer])?) -> Void) {
        guard let dot = token.firstIndex(of: "."), isLinked else { return completion(nil) }
        let holder = String(token[..<dot])
        guard ClusterWire.isToken(holder), holder != instanceID else { return completion(nil) }
        let request = UUID().uuidString
        pendingResumes.withLock { $0[request] = completion }
        var c = makeControl(.resume_request)
        c.token = token
        c.room = room
        c.request = request
        publishControl(c, to: ClusterWire.subjectTo(configuration.name, holder))
        // No answer (the holder died, or is not reachable): the resume fails.
        client.eventLoop.scheduleTask(in: .seconds(3)) { [self] in
            pendingResumes.withLock { $0.removeValue(forKey: request) }?(nil)
        }
    }

    /// Another instance has a socket for one of this instance's sessions: hand the session over (queued
    /// messages and all), reach the peer there from now on, and pass on what still arrives here for it.
    private func handOver(token: String, room: String, request: String, to instance: String) {
        let subject = ClusterWire.subjectTo(configuration.name, instance)
        let forwarder = MoveForwarder()
        guard let (peer, queued) = hub.handOver(token: token, room: room, forward: { forwarder.forward($0) }) else {
            var denied = makeControl(.resume_denied)
            denied.request = request
            publishControl(denied, to: subject)
            return
        }
        let moved = RemotePeer(info: peer.info, room: peer.room, instance: instance, joined: peer.joined)
        directory.move(moved)
        movedAway.withLock { $0[peer.info.peerID] = (instance, .now) }
        var grant = makeControl(.resume_grant)
        grant.request = request
        grant.peer = WirePeer(peer: peer.info, room: peer.room, joinedMillis: peer.joined.millis)
        grant.queued = queued.map { String(buffer: $0) }
        let head = ClusterWire.directedHead(room: peer.room, to: peer.info.peerID)
        forwarder.open(grant: { publishControl(grant, to: subject) }, then: { [client] in client.publish(subject, head: head, $0) })
        logger.info("cluster: session moved", metadata: ["peer": "\(peer.info.peerID)", "to": "\(instance)"])
    }

    /// After adopting a session that moved here: everyone reaches it here from now on.
    public func announceMoved(_ peer: PeerInfo, room: String, joined: JoinStamp) {
        _ = directory.leave(peer.peerID)  // it is a local peer now (the rooms heard nothing of the move)
        var c = makeControl(.moved)
        c.peer = WirePeer(peer: peer, room: room, joinedMillis: joined.millis)
        publishControl(c, to: subjectAll)
    }

    public func turnEndpoint() -> TurnEndpoint? {
        let choice = configuration.iceServers
        guard choice != .own else { return nil }
        func score(_ a: InstanceAdvert) -> Double { Double(a.allocations) / Double(max(a.capacity, 1)) }
        let fresh = ContinuousClock.now - configuration.instanceTimeout
        // least_loaded: another instance only when it is strictly less loaded than this one.
        let mine = choice == .leastLoaded ? score(advert()) : .infinity
        var best: (score: Double, id: String, endpoint: TurnEndpoint)?
        for (id, i) in directory.instances() where i.lastSeen >= fresh {
            guard let a = i.advert, let t = a.turn, choice != .turnOnly || !a.signaling else { continue }
            let s = score(a)
            if s < mine, best == nil || (s, id) < (best!.score, best!.id) { best = (s, id, t.endpoint) }
        }
        return best?.endpoint
    }

    // MARK: Operations

    /// Every cluster metric: the NATS link's, the messages', and how many instances this one knows.
    public var metrics: [Metric] {
        [.value("webrtc_cluster_instances", .gauge, help: "instances this one knows, itself included") { self.instances().count }]
            + client.stats.metrics + stats.metrics
    }

    /// Every instance this one knows, itself first.
    public func instances() -> [ClusterInstanceStatus] {
        let now = ContinuousClock.now
        let me = advert()
        var out = [ClusterInstanceStatus(id: instanceID, address: me.address, turn: me.turn.map { "\($0.host):\($0.port)" },
                                         peers: me.peers, allocations: me.allocations, last_seen: 0, this: true)]
        for (id, i) in directory.instances().sorted(by: { $0.key < $1.key }) {
            let a = i.advert
            let ago = now - i.lastSeen
            out.append(ClusterInstanceStatus(id: id, address: a?.address ?? "", turn: a?.turn.map { "\($0.host):\($0.port)" },
                                             peers: directory.peers(on: id).count, allocations: a?.allocations ?? 0,
                                             last_seen: Double(ago.components.seconds) + Double(ago.components.attoseconds) / 1e18,
                                             this: false))
        }
        return out
    }
}

/// What arrives for a session being handed over, held back until the grant has been published so that
/// it reaches the new instance after the queued messages, then passed straight on.
final class MoveForwarder: Sendable {
    private struct State {
        var held: [ByteBuffer] = []
        var send: (@Sendable (ByteBuffer) -> Void)?
    }

    private let state = Mutex(State())

    func forward(_ message: ByteBuffer) -> Bool {
        state.withLock { s in
            if let send = s.send { send(message) } else { s.held.append(message) }
        }
        return true
    }

    /// Publishes the grant, then what was held back, in order; later messages go straight on with `send`.
    func open(grant: () -> Void, then send: @escaping @Sendable (ByteBuffer) -> Void) {
        state.withLock { s in
            grant()
            for m in s.held { send(m) }
            s.held = []
            s.send = send
        }
    }
}

/// Hands the NATS client's events to the node once it runs (the client is made before the node exists).
final class EventRelay: Sendable {
    private let handler = Mutex<(@Sendable (NATSClient.Event) -> Void)?>(nil)
    func set(_ h: @escaping @Sendable (NATSClient.Event) -> Void) { handler.withLock { $0 = h } }
    func forward(_ e: NATSClient.Event) { handler.withLock { $0 }?(e) }
}
