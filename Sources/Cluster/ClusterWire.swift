import Foundation
import NIOCore
import Signaling

/// What crosses between instances, on two NATS subjects per cluster:
/// - `wrtc.<cluster>.all`, which every instance reads: presence (heartbeats, joins, leaves, goodbyes,
///   state for a resync), revocations, broadcasts and server-API publications;
/// - `wrtc.<cluster>.to.<instance>`, read by that instance only: directed messages to its peers, server
///   API sends and kicks, and answers to its resync request.
/// An instance publishes everything over its one NATS connection, and NATS keeps the order of one
/// connection's messages to each subscriber: what one peer sends another arrives in the order sent, and
/// after the `joined` that announced the sender.
///
/// Payloads: a first line, then a body.
/// - `M <room> <peer>\n<message>`: a client's message for one peer (the JSON text already carries `from`);
/// - `B <room>\n<message>`: a client's broadcast for a room;
/// - `C\n<json>`: a `ClusterControl` (everything else; rare next to messages, so plain Codable).
enum ClusterWire {
    static func subjectAll(_ cluster: String) -> String { "wrtc.\(cluster).all" }
    static func subjectTo(_ cluster: String, _ instance: String) -> String { "wrtc.\(cluster).to.\(instance)" }

    /// A NATS subject token: letters, digits, `-` and `_` (cluster names and instance ids).
    static func isToken(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "-")
                || c == UInt8(ascii: "_")
        }
    }

    /// The first line of a directed message; the message itself follows it in the same payload.
    static func directedHead(room: String, to peer: String) -> String { "M \(room) \(peer)\n" }

    /// The first line of a broadcast.
    static func broadcastHead(room: String) -> String { "B \(room)\n" }

    static func directed(room: String, to peer: String, message: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer(string: directedHead(room: room, to: peer))
        out.writeImmutableBuffer(message)
        return out
    }

    static func broadcast(room: String, message: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer(string: broadcastHead(room: room))
        out.writeImmutableBuffer(message)
        return out
    }

    static func control(_ c: ClusterControl) -> ByteBuffer {
        var out = ByteBuffer(staticString: "C\n")
        out.writeBytes((try? JSONEncoder().encode(c)) ?? Data())
        return out
    }

    enum Decoded {
        /// The message: a slice of the payload past its first line.
        case directed(room: String, peer: String, message: ByteBuffer)
        case broadcast(room: String, message: ByteBuffer)
        case control(ClusterControl)
    }

    static func decode(_ payload: ByteBuffer) -> Decoded? {
        let view = payload.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let header = view[view.startIndex..<newline]
        var body = payload
        body.moveReaderIndex(forwardBy: newline + 1 - view.startIndex)
        let fields = header.split(separator: UInt8(ascii: " "))
        switch fields.first.map(Array.init) {
        case [UInt8(ascii: "M")]?:
            guard fields.count == 3 else { return nil }
            return .directed(room: String(decoding: fields[1], as: UTF8.self), peer: String(decoding: fields[2], as: UTF8.self),
                             message: body)
        case [UInt8(ascii: "B")]?:
            guard fields.count == 2 else { return nil }
            return .broadcast(room: String(decoding: fields[1], as: UTF8.self), message: body)
        case [UInt8(ascii: "C")]?:
            guard let c = try? JSONDecoder().decode(ClusterControl.self, from: Data(body.readableBytesView)) else { return nil }
            return .control(c)
        default:
            return nil
        }
    }
}

/// One instance as the others see it (in its heartbeats).
public struct InstanceAdvert: Sendable, Codable, Equatable {
    /// Where its signaling port is reached (for operators: the dashboard lists it).
    public var address: String
    /// Its TURN server as clients reach it.
    public var turn: WireTurnEndpoint?
    public var peers: Int
    public var allocations: Int
    /// Allocations it takes at most (turn.max_allocations; 0 = unlimited).
    public var capacity: Int
    /// False for a TURN-only instance (signaling.enabled: false).
    public var signaling: Bool

    public init(address: String, turn: WireTurnEndpoint?, peers: Int = 0, allocations: Int = 0, capacity: Int = 0,
                signaling: Bool = true) {
        self.address = address
        self.signaling = signaling
        self.turn = turn
        self.peers = peers
        self.allocations = allocations
        self.capacity = capacity
    }
}

public struct WireTurnEndpoint: Sendable, Codable, Equatable {
    public var host: String
    public var port: Int
    public var tcp: Bool
    public var tls_port: Int?

    public init(_ e: TurnEndpoint) {
        host = e.host
        port = e.port
        tcp = e.tcp
        tls_port = e.tlsPort
    }

    var endpoint: TurnEndpoint { TurnEndpoint(host: host, port: port, tcp: tcp, tlsPort: tls_port) }
}

/// A peer as it crosses the wire (a join token's name, metadata and broadcast permission with it, when
/// it has them: other instances show them, and a resume there keeps the permission).
struct WirePeer: Codable, Equatable {
    var peer_id: String
    var username: String
    var room: String
    var joined_ms: Int64
    var name: String?
    var metadata_json: String?
    var may_broadcast: Bool?

    init(_ p: LocalPeer) {
        self.init(peer: p.info, room: p.room, joinedMillis: p.joined.millis)
    }

    init(peer: PeerInfo, room: String, joinedMillis: Int64) {
        peer_id = peer.peerID
        username = peer.username
        self.room = room
        joined_ms = joinedMillis
        name = peer.name
        metadata_json = peer.metadataJSON
        may_broadcast = peer.mayBroadcast ? nil : false
    }

    var info: PeerInfo {
        PeerInfo(peerID: peer_id, username: username, name: name, metadataJSON: metadata_json, mayBroadcast: may_broadcast ?? true)
    }

    func remote(on instance: String) -> RemotePeer {
        RemotePeer(info: info, room: room, instance: instance, joined: JoinStamp(millis: joined_ms, peerID: peer_id))
    }
}

/// Everything between instances other than client messages.
struct ClusterControl: Codable {
    enum Kind: String, Codable {
        /// Every `cluster.heartbeat_interval`: alive, with what it serves and its load.
        case heartbeat
        /// A local peer joined / left.
        case joined, left
        /// The sender's whole presence (after it connected or when asked): replaces what others knew of it.
        case state
        /// "Send me your state" (after the sender connected): answered on its own subject.
        case sync
        /// A graceful stop: its peers are gone (their `left` went out already), forget the instance.
        case goodbye
        /// Sessions whose TURN credentials are no longer valid anywhere.
        case revoke
        /// Server API on a remote instance.
        case publish, send, kick
        /// A peer's socket went away with its session held / it resumed.
        case away, back
        /// A session moving between instances: "hand me the session of this token" (to its instance),
        /// "here it is" or "no" (to the asker), and "it is on my instance now" (to all).
        case resume_request, resume_grant, resume_denied, moved
    }

    var type: Kind
    /// The sending instance, its boot id (random per process) and start time.
    var instance: String
    var boot: String
    var started_ms: Int64
    var advert: InstanceAdvert?
    var peer: WirePeer?
    var peers: [WirePeer]?
    /// Sessions and when their credentials expire (Unix seconds).
    var revoked: [String: Int64]?
    var room: String?
    var target: String?
    var event: String?
    /// JSON text of a server API message's data.
    var data: String?
    var reason: String?
    /// A resume request's id, and the token it presents.
    var request: String?
    var token: String?
    /// Messages queued for a held session, handed over with it (JSON text each).
    var queued: [String]?

    init(type: Kind, instance: String, boot: String, started: Int64) {
        self.type = type
        self.instance = instance
        self.boot = boot
        self.started_ms = started
    }
}
