import NIOCore

/// When a peer joined its room, as every instance of a cluster orders joins: by time, then by peer id.
/// Decides, the same way everywhere, which of two simultaneous joins is the later one (the one refused
/// when a room is over `signaling.max_peers_per_room`, the one that stays under
/// `signaling.duplicate_username: replace`).
public struct JoinStamp: Sendable, Comparable, Hashable, Codable {
    /// Milliseconds since 1970 on the joining instance's clock.
    public let millis: Int64
    public let peerID: String

    public init(millis: Int64, peerID: String) {
        self.millis = millis
        self.peerID = peerID
    }

    public static func < (a: JoinStamp, b: JoinStamp) -> Bool {
        (a.millis, a.peerID) < (b.millis, b.peerID)
    }
}

/// A peer whose socket is on another instance of the cluster.
public struct RemotePeer: Sendable, Equatable {
    public let info: PeerInfo
    public let room: String
    public let instance: String
    public let joined: JoinStamp

    public init(info: PeerInfo, room: String, instance: String, joined: JoinStamp) {
        self.info = info
        self.room = room
        self.instance = instance
        self.joined = joined
    }
}

/// A peer of this instance, as the cluster is told of it.
public struct LocalPeer: Sendable, Equatable {
    public let info: PeerInfo
    public let room: String
    public let joined: JoinStamp
}

/// Where the ICE servers handed to a session point: this instance's TURN or another instance's.
public struct TurnEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var tcp: Bool
    public var tlsPort: Int?

    public init(host: String, port: Int, tcp: Bool, tlsPort: Int?) {
        self.host = host
        self.port = port
        self.tcp = tcp
        self.tlsPort = tlsPort
    }
}

/// What the hub asks of the cluster (`Cluster` implements it; a single box has none, and the hub then
/// never looks beyond its own peers). Calls come from any thread and must not block.
public protocol SignalingBackplane: AnyObject, Sendable {
    /// Peers of `room` on other instances.
    func remotePeers(in room: String) -> [RemotePeer]
    /// A peer on another instance, nil when none is known.
    func remotePeer(_ peerID: String) -> RemotePeer?
    /// Peers per room on other instances.
    func remoteRooms() -> [String: Int]
    /// Whether the link to the other instances is up (a directed message to a remote peer can go).
    var isLinked: Bool { get }

    /// A local peer joined (after its `authenticated` and the local `joined`).
    func announceJoin(_ peer: LocalPeer)
    /// A local peer left.
    func announceLeave(_ peer: PeerInfo, room: String)
    /// A client's message (already carrying `from`) for a peer on another instance.
    func forward(_ message: ByteBuffer, to peer: RemotePeer)
    /// A client's broadcast (already carrying `from`) for the peers of `room` on other instances.
    func broadcast(_ message: ByteBuffer, room: String)
    /// Server API on other instances: publish to a room, send to a peer, kick a peer.
    func publish(room: String, event: String, dataJSON: String?)
    func send(to peer: RemotePeer, event: String, dataJSON: String?)
    func kick(_ peer: RemotePeer, reason: String)
    /// The TURN server a new session's `ice_servers` should name; nil = this instance's.
    func turnEndpoint() -> TurnEndpoint?
    /// A local peer's socket went away with its session held (`away`), or it resumed.
    func announcePresence(_ peer: PeerInfo, room: String, away: Bool)
    /// What this instance's resume tokens start with (its id), so that another instance knows where a
    /// session is held.
    var resumeTokenPrefix: String { get }
    /// A `resume` whose token belongs to another instance: asks that instance to hand the session over.
    /// `completion` gets the peer (as it was there) and its queued messages, or nil (refused, or no answer
    /// within a few seconds); it runs on any thread.
    func requestResume(token: String, room: String,
                       completion: @escaping @Sendable ((peer: RemotePeer, queued: [ByteBuffer])?) -> Void)
    /// A session that moved here by a resume is reached here from now on.
    func announceMoved(_ peer: PeerInfo, room: String, joined: JoinStamp)
}
