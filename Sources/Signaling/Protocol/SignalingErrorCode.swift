/// Every client-visible signaling error, as the stable `code` string of
/// `{"event":"error","data":{"code":…,"message":…}}`. Documented in the README's protocol section.
public enum SignalingErrorCode: String, Sendable, CaseIterable {
    /// `to` names no peer in this room (the original server crashed the connection here).
    case unknownPeer = "unknown_peer"
    /// The text frame is not JSON.
    case invalidJSON = "invalid_json"
    /// A binary frame; the protocol is JSON text only.
    case binaryNotSupported = "binary_not_supported"
    /// A message larger than `signaling.max_message_size`; it was discarded unread.
    case messageTooLarge = "message_too_large"
    /// The room already holds `signaling.max_peers_per_room` peers; the socket closes.
    case roomFull = "room_full"
    /// The server already holds `signaling.max_connections` authenticated peers; the socket closes.
    case serverFull = "server_full"
    /// Too many bad messages in a short time; the socket closes after this event.
    case rateLimited = "rate_limited"
    /// Another session logged in with this username and `signaling.duplicate_username` is `replace`.
    case replaced = "replaced"
    /// A second `authenticate` on an already authenticated socket.
    case alreadyAuthenticated = "already_authenticated"
    /// Removed by the server API (`DELETE /api/peers/{peer}`).
    case kicked = "kicked"
    /// `to` names a peer on another instance of the cluster while the link between instances (NATS) is
    /// down; the message was not delivered. The socket stays open.
    case peerUnreachable = "peer_unreachable"
    /// A `resume` whose token is wrong, already used, expired or from another room; the socket stays
    /// open for an `authenticate` (and the failure counts in the login throttle).
    case resumeFailed = "resume_failed"
    /// This socket's session was resumed on another connection; the socket closes.
    case resumed = "resumed"
    /// The login's join token does not permit this (a broadcast with `permissions.broadcast` false). The
    /// socket stays open.
    case notPermitted = "not_permitted"
}
