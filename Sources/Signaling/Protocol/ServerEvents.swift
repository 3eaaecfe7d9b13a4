/// The JSON text of every event the server itself sends. Clients of lambdaclass/webrtc-server read
/// `event` and `data`; everything this server adds is an extra field, never a changed one.
public enum ServerEvents {
    public static let pong = "pong"
    public static let unauthorized = #"{"event":"unauthorized"}"#
    public static let invalidMessage = #"{"event":"invalid_message"}"#
    public static let shutdown = #"{"event":"shutdown"}"#

    /// `unauthorized` with why (additive: old clients read only `event`).
    public static func unauthorized(reason: String, retryAfter: Double?) -> String {
        guard let retryAfter else { return #"{"event":"unauthorized","data":{"reason":"# + JSONText.quoted(reason) + "}}" }
        return #"{"event":"unauthorized","data":{"reason":"# + JSONText.quoted(reason) + #","retry_after":\#(Int(retryAfter.rounded(.up)))}}"#
    }

    public static func joined(_ peer: PeerInfo) -> String {
        #"{"event":"joined","data":"# + peer.json + "}"
    }

    public static func left(_ peer: PeerInfo) -> String {
        #"{"event":"left","data":"# + peer.json + "}"
    }

    /// `authenticated` with the original `peer_id` plus `username`, the room roster, ICE servers and the
    /// token that resumes this session after a dropped socket.
    public static func authenticated(peerID: String, username: String, room: String, peers: [PeerInfo],
                                     iceServersJSON: String, resumeToken: String) -> String {
        #"{"event":"authenticated","data":{"peer_id":"# + JSONText.quoted(peerID)
            + #","username":"# + JSONText.quoted(username)
            + #","room":"# + JSONText.quoted(room)
            + #","peers":["# + peers.map(\.json).joined(separator: ",") + "]"
            + #","ice_servers":"# + iceServersJSON
            + #","resume_token":"# + JSONText.quoted(resumeToken) + "}}"
    }

    /// `resumed`: the same `peer_id`, a new token, the roster now, and how many queued messages follow.
    public static func resumed(peerID: String, resumeToken: String, peers: [PeerInfo], replayed: Int) -> String {
        #"{"event":"resumed","data":{"peer_id":"# + JSONText.quoted(peerID)
            + #","resume_token":"# + JSONText.quoted(resumeToken)
            + #","peers":["# + peers.map(\.json).joined(separator: ",") + "]"
            + #","replayed":\#(replayed)}}"#
    }

    /// A peer's socket went away and its session is held for a resume (optional to handle: `left` still
    /// follows if it does not come back).
    public static func away(_ peer: PeerInfo) -> String {
        #"{"event":"peer_away","data":"# + peer.json + "}"
    }

    /// A peer that was away resumed its session.
    public static func back(_ peer: PeerInfo) -> String {
        #"{"event":"peer_back","data":"# + peer.json + "}"
    }

    public static func error(_ code: SignalingErrorCode, _ message: String, extra: [(String, String)] = []) -> String {
        var s = #"{"event":"error","data":{"code":"# + JSONText.quoted(code.rawValue)
            + #","message":"# + JSONText.quoted(message)
        for (k, v) in extra { s += "," + JSONText.quoted(k) + ":" + JSONText.quoted(v) }
        return s + "}}"
    }

    /// A server-originated message (server API publish/send): `{"event":…,"data":…,"from":"server"}`.
    public static func fromServer(event: String, dataJSON: String?) -> String {
        var s = #"{"event":"# + JSONText.quoted(event)
        if let d = dataJSON { s += #","data":"# + d }
        return s + #","from":"server"}"#
    }
}

/// A peer as others see it: in `joined`, `left`, the roster and the server API. A token login adds its
/// `name` and `metadata`; its `permissions.broadcast` travels with it (through a resume too).
public struct PeerInfo: Sendable, Equatable, Codable {
    public let peerID: String
    public let username: String
    /// The token's `name` claim.
    public var name: String?
    /// The token's `metadata` claim, as JSON text (an object in `joined` and the roster).
    public var metadataJSON: String?
    /// false when the token's `permissions.broadcast` was false.
    public var mayBroadcast: Bool

    public init(peerID: String, username: String, name: String? = nil, metadataJSON: String? = nil, mayBroadcast: Bool = true) {
        self.peerID = peerID
        self.username = username
        self.name = name
        self.metadataJSON = metadataJSON
        self.mayBroadcast = mayBroadcast
    }

    enum CodingKeys: String, CodingKey {
        case peerID = "peer_id"
        case username, name
        case metadataJSON = "metadata_json"
        case mayBroadcast = "may_broadcast"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(peerID: try c.decode(String.self, forKey: .peerID), username: try c.decode(String.self, forKey: .username),
                  name: try c.decodeIfPresent(String.self, forKey: .name),
                  metadataJSON: try c.decodeIfPresent(String.self, forKey: .metadataJSON),
                  mayBroadcast: try c.decodeIfPresent(Bool.self, forKey: .mayBroadcast) ?? true)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(peerID, forKey: .peerID)
        try c.encode(username, forKey: .username)
        try c.encodeIfPresent(name, forKey: .name)
        try c.encodeIfPresent(metadataJSON, forKey: .metadataJSON)
        if !mayBroadcast { try c.encode(false, forKey: .mayBroadcast) }
    }

    var json: String {
        var s = #"{"username":"# + JSONText.quoted(username) + #","peer_id":"# + JSONText.quoted(peerID)
        if let name { s += #","name":"# + JSONText.quoted(name) }
        if let metadataJSON { s += #","metadata":"# + metadataJSON }
        return s + "}"
    }
}
