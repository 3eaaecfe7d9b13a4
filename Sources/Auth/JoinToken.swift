/// What a signed join token (`{"event":"authenticate","data":{"token":…}}`) grants once verified: who,
/// in which room, what the others see of them, and what they may do.
public struct JoinGrant: Sendable, Equatable {
    /// `sub`: the username, as a password login's.
    public var username: String
    /// `name`: a display name the others see in `peers`/`joined` (optional).
    public var name: String?
    /// `metadata`: opaque JSON (its text) the others see in `peers`/`joined` (optional).
    public var metadataJSON: String?
    /// `permissions.broadcast` (default true): may send to `*`.
    public var mayBroadcast: Bool
    /// `permissions.turn` (default true): gets TURN credentials in `authenticated`.
    public var mayUseTurn: Bool

    public init(username: String, name: String? = nil, metadataJSON: String? = nil, mayBroadcast: Bool = true, mayUseTurn: Bool = true) {
        self.username = username
        self.name = name
        self.metadataJSON = metadataJSON
        self.mayBroadcast = mayBroadcast
        self.mayUseTurn = mayUseTurn
    }
}

/// Why a token was refused, in the `unauthorized` reason (`token_<case>`); never more detail than this
/// reaches the client.
public enum TokenRefusal: String, Error, Sendable, CaseIterable {
    /// Not three base64url parts of JSON, or a claim of the wrong type.
    case malformed
    /// No configured key verifies the signature (wrong key, tampered, `alg: none`, unknown `kid`).
    case signature
    /// `exp` is past (beyond the leeway), or missing.
    case expired
    /// `nbf` is still ahead (beyond the leeway).
    case notYetValid = "not_yet_valid"
    /// `room` is missing or names another room.
    case wrongRoom = "wrong_room"
    /// `sub` is missing or empty.
    case noSubject = "no_subject"
    /// A single-use token (`jti`) seen before.
    case reused
    /// Tokens are not accepted here (`auth.methods`, or no keys configured).
    case notAccepted = "not_accepted"

    /// The `unauthorized` reason: `token_expired`, `token_wrong_room`, …
    public var reason: String { "token_" + rawValue }
}

/// Verifies join tokens for the signaling login, on the connection's event loop: it must not wait on
/// anything (signature checks are microseconds; a verifier that needs I/O belongs in a password lookup).
public protocol JoinTokenVerifier: Sendable {
    func verify(_ token: String, room: String) -> Result<JoinGrant, TokenRefusal>
}
