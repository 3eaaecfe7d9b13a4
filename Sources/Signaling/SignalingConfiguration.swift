import Foundation
import NIOSSL

/// Everything the signaling half can be told. The executable fills it from the configuration keys
/// (`signaling.*`, `api.*`, `webhook.*`); defaults here equal the documented defaults.
public struct SignalingConfiguration: Sendable {
    public enum DuplicateUsernamePolicy: String, Sendable, CaseIterable {
        /// Both sessions stay (as lambdaclass/webrtc-server does).
        case allow
        /// The older session in the same room receives `error{code:"replaced"}` and is closed.
        case replace
    }

    public var listenAddress = "0.0.0.0"
    /// Event loop threads of the signaling port; 0 = one per core.
    public var threads = 0
    public var port = 8080
    /// PEM files; both set = wss:// and https:// on `port`.
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// The TLS context for each new connection when TLS is on. The executable supplies a reloadable one
    /// (SIGHUP re-reads the files; open connections keep theirs); nil = the files are read once at start.
    public var tlsContext: (@Sendable () -> NIOSSLContext)?
    /// An HTTP connection that has not sent a complete request head this long after its accept (or, kept
    /// alive, after its last response) is closed; it covers a stalled TLS handshake too. So is one whose
    /// request body has not arrived in full this long after its head. Zero = never.
    public var httpTimeout: Duration = .seconds(30)
    /// A socket that has not authenticated by then is closed.
    public var authTimeout: Duration = .seconds(10)
    /// Largest message (text or binary, after reassembly of fragments) read; larger → `message_too_large`.
    public var maxMessageSize = 64 * 1024
    /// 0 = unlimited.
    public var maxPeersPerRoom = 0
    /// Open WebSocket connections (authenticated or not); 0 = unlimited.
    public var maxConnections = 20_000
    /// WebSocket ping interval; a peer that has not answered the previous ping is closed. 0 disables.
    public var keepaliveInterval: Duration = .seconds(30)
    /// Close a socket that sent no message for this long. 0 disables.
    public var idleTimeout: Duration = .zero
    public var duplicateUsername: DuplicateUsernamePolicy = .allow
    /// How long a session whose socket went away without leaving is held for a resume (its TURN
    /// credentials and allocations stay, the others are not told `left`); zero = it ends at once.
    public var resumeWindow: Duration = .seconds(30)
    /// What a held session queues for its resume; beyond either bound the session ends as a leave.
    public var resumeQueueMessages = 256
    public var resumeQueueBytes = 256 * 1024
    /// Bytes waiting to be written to one peer (beyond what the kernel holds) before it counts as a slow
    /// consumer and is disconnected.
    public var outboundBufferLimit = 1 << 20
    /// Bad messages (error events) allowed per `abuseWindow`; one more → `rate_limited` and close.
    public var abuseLimit = 20
    public var abuseWindow: Duration = .seconds(10)
    /// After the server sends its close frame, how long the client has to answer before the socket is cut.
    public var closeGrace: Duration = .seconds(2)
    /// Room names: 1 to this many characters from `A-Z a-z 0-9 - _ .`.
    public var maxRoomNameLength = 64
    /// Bearer token for `/api/`; empty = every API request is refused with 401. It also opens the admin
    /// endpoints from any address.
    public var apiToken = ""
    /// Client addresses (4 or 16 bytes) the admin endpoints (/metrics, /api/stats, /api/v1/log_level,
    /// /dashboard) answer without the token; loopback by default. A request that came through a proxy
    /// (Forwarded or X-Forwarded-For header) never counts as from an allowed address.
    public var adminAllowed: @Sendable ([UInt8]) -> Bool = SignalingConfiguration.isLoopback
    /// Dashboard live feeds (`/dashboard/events`) open at once; one more is answered 503. They share one
    /// stats snapshot a second, however many there are.
    public var maxEventStreams = 16

    /// Addresses (4 or 16 bytes) of reverse proxies whose X-Forwarded-For is believed for the client's
    /// address (the auth throttle's source); none by default, so the header is ignored.
    public var trustedProxies: @Sendable ([UInt8]) -> Bool = { _ in false }

    /// 127.0.0.0/8 and ::1. IPv4-mapped clients arrive here as IPv4 (`SocketAddress.addressBytes`).
    public static let isLoopback: @Sendable ([UInt8]) -> Bool = { b in
        if b.count == 4 { return b[0] == 127 }
        return b.count == 16 && b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1
    }
    /// false: the port serves only `/healthz`, `/readyz`, `/api/v1/welcome` and the admin endpoints (a
    /// TURN-only deployment that still wants metrics and the dashboard); `/websocket/…`, the server API
    /// and the example pages answer 404.
    public var webSocketEnabled = true
    /// false: `authenticate` with a username and password is refused (`auth.methods` without `password`);
    /// only join tokens log in.
    public var passwordLogins = true
    /// Folder with `index.html` served at `/` and `/room/:name`; nil = not served.
    public var staticDirectory: String?
    public var iceServers = IceServerSettings()
    public var webhook: WebhookSettings?

    public init() {}

    public var tlsEnabled: Bool { tlsCertificatePath != nil && tlsKeyPath != nil }

    /// True for names the WebSocket route accepts.
    public func isValidRoomName(_ name: Substring) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maxRoomNameLength else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
    }
}

/// What `authenticated.data.ice_servers` lists, in the shape `RTCPeerConnection({iceServers})` takes.
public struct IceServerSettings: Sendable {
    /// Host name or IP put in the URLs; nil = the host the client used to reach the signaling port.
    public var host: String?
    public var stunPort = 3478
    public var turnUDP = true
    public var turnTCP = false
    /// Port of the TURN-over-TLS listener, nil when TLS is off.
    public var turnsPort: Int?
    /// Lifetime of the TURN credentials minted per session (they are also revoked when it ends).
    public var credentialLifetime: TimeInterval = 86_400

    public init() {}
}

public struct WebhookSettings: Sendable {
    public var url: URL
    /// HMAC-SHA256 key for the `X-Webrtc-Signature: sha256=<hex>` header; empty = no signature.
    public var secret: String
    public var timeout: Duration

    public init(url: URL, secret: String, timeout: Duration = .seconds(5)) {
        self.url = url
        self.secret = secret
        self.timeout = timeout
    }
}
