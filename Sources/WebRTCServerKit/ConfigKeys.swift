import Foundation

/// A configuration key: name, kind, default, help, whether a SIGHUP reload applies it and whether its
/// value is a secret (masked by check-config). Each key is declared once below, as a constant the
/// settings are read through (a misspelt key does not compile); docs/configuration.md documents the
/// same list; `webrtc-server --help` prints it.
struct ConfigKey: Sendable {
    enum Kind: Sendable { case scalar, list, map }
    let name: String
    let kind: Kind
    let defaultValue: String
    let help: String
    var reloadable = false
    var secret = false

    var environmentName: String {
        ConfigSources.environmentPrefix + name.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    var flagName: String { name.replacingOccurrences(of: ".", with: "-").replacingOccurrences(of: "_", with: "-") }

    func rawFromString(_ s: String) throws -> RawValue {
        switch kind {
        case .scalar:
            return .scalar(s)
        case .list:
            return .list(s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        case .map:
            var m: [String: String] = [:]
            for pair in s.split(separator: ",") {
                guard let eq = pair.firstIndex(of: "=") else {
                    throw ConfigError(self, problem: "expected name=value pairs separated by commas")
                }
                m[String(pair[..<eq]).trimmingCharacters(in: .whitespaces)] = String(pair[pair.index(after: eq)...])
            }
            return .map(m)
        }
    }
}

enum ConfigKeys {
    /// Every key, in the order of --help, the example file and docs/configuration.md.
    static let all: [ConfigKey] = [
        .logLevel,
        .realm,
        .software,
        .turnListen,
        .turnPort,
        .turnRelayAddress,
        .turnExternalIp,
        .turnIpv6Relays,
        .turnRelayAddress6,
        .turnExternalIp6,
        .turnRelayPortMin,
        .turnRelayPortMax,
        .turnDefaultLifetime,
        .turnMaxLifetime,
        .turnPermissionLifetime,
        .turnChannelLifetime,
        .turnNonceLifetime,
        .turnNonceSecret,
        .turnMaxAllocations,
        .turnMaxAllocationsPerUser,
        .turnMaxPermissionsPerAllocation,
        .turnMaxChannelsPerAllocation,
        .turnMaxConnectionsPerSource,
        .turnThreads,
        .turnUdpGso,
        .turnTcp,
        .turnTlsPort,
        .turnTlsCert,
        .turnTlsKey,
        .turnStreamTimeout,
        .turnStreamIdleTimeout,
        .turnStrictChannelNumbers,
        .turnBandwidthLimit,
        .turnUnauthenticatedRate,
        .turnUnauthenticatedBurst,
        .turnAllowPeers,
        .turnDenyPeers,
        .signalingEnabled,
        .signalingListen,
        .signalingPort,
        .signalingThreads,
        .signalingTlsCert,
        .signalingTlsKey,
        .signalingHttpTimeout,
        .signalingAuthTimeout,
        .signalingMaxMessageSize,
        .signalingMaxPeersPerRoom,
        .signalingMaxConnections,
        .signalingKeepaliveInterval,
        .signalingIdleTimeout,
        .signalingDuplicateUsername,
        .signalingResumeWindow,
        .signalingResumeQueueMessages,
        .signalingResumeQueueBytes,
        .signalingOutboundBuffer,
        .signalingAbuseLimit,
        .signalingAbuseWindow,
        .signalingStaticDir,
        .signalingIceHost,
        .signalingIceCredentialLifetime,
        .signalingTrustedProxies,
        .apiToken,
        .adminAllow,
        .adminMaxEventStreams,
        .webhookUrl,
        .webhookSecret,
        .webhookTimeout,
        .authUsers,
        .authSecrets,
        .authDemoLogin,
        .authMaxEphemeralLifetime,
        .authSqlite,
        .authPostgresql,
        .authHttpLookup,
        .authHttpLookupSecret,
        .authLookupCacheTTL,
        .authLookupTimeout,
        .authLookupMaxInFlight,
        .authMethods,
        .authJwtKeys,
        .authJwksFile,
        .authTokenLeeway,
        .authThrottleFreeFailures,
        .authThrottleWindow,
        .authThrottleBaseDelay,
        .authThrottleMaxDelay,
        .authBlockAfter,
        .authBlockDuration,
        .clusterNats,
        .clusterName,
        .clusterInstanceId,
        .clusterSecret,
        .clusterInstanceTimeout,
        .clusterHeartbeatInterval,
        .clusterIceServers,
        .clusterAdvertiseHost,
        .clusterNatsUser,
        .clusterNatsPassword,
        .clusterNatsToken,
        .clusterNatsTls,
        .clusterNatsTlsCa,
        .clusterBuffer,
        .shutdownGracePeriod,
    ]

    /// Keys a SIGHUP reload applies; a change to any other key is logged as needing a restart.
    static let reloadable: [ConfigKey] = all.filter(\.reloadable)

    static let byName: [String: ConfigKey] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

extension ConfigKey {
    static let logLevel = ConfigKey(name: "log_level", kind: .scalar, defaultValue: "info",
                            help: "trace, debug, info, notice, warning, error or critical", reloadable: true)
    static let realm = ConfigKey(name: "realm", kind: .scalar, defaultValue: "webrtc-server",
                            help: "TURN realm: part of the long-term key MD5(user:realm:password)")
    static let software = ConfigKey(name: "software", kind: .scalar, defaultValue: "webrtc-server",
                            help: "SOFTWARE attribute in STUN responses; empty sends none")
    static let turnListen = ConfigKey(name: "turn.listen", kind: .list, defaultValue: "0.0.0.0,::",
                            help: "addresses the STUN/TURN listeners (UDP, TCP, TLS) bind to; an IPv6 one takes IPv6 only. The default's :: is skipped with a warning on a host without IPv6")
    static let turnPort = ConfigKey(name: "turn.port", kind: .scalar, defaultValue: "3478", help: "STUN/TURN UDP port")
    static let turnRelayAddress = ConfigKey(name: "turn.relay_address", kind: .scalar, defaultValue: "0.0.0.0",
                            help: "local address relay sockets bind to")
    static let turnExternalIp = ConfigKey(name: "turn.external_ip", kind: .scalar, defaultValue: "",
                            help: "IP told to clients as the relayed address (host behind NAT); empty = the relay/listen address or the first non-loopback interface address")
    static let turnIpv6Relays = ConfigKey(name: "turn.ipv6_relays", kind: .scalar, defaultValue: "true",
                            help: "offer IPv6 relays (REQUESTED-ADDRESS-FAMILY IPv6, RFC 6156) when the host has an IPv6 relay address; false = 440")
    static let turnRelayAddress6 = ConfigKey(name: "turn.relay_address6", kind: .scalar, defaultValue: "::", help: "local address IPv6 relay sockets bind to")
    static let turnExternalIp6 = ConfigKey(name: "turn.external_ip6", kind: .scalar, defaultValue: "",
                            help: "IPv6 address told to clients for IPv6 relays; empty = turn.relay_address6 or an IPv6 listen address when specific, else the first global IPv6 interface address; none = IPv6 relays refused (440)")
    static let turnRelayPortMin = ConfigKey(name: "turn.relay_port_min", kind: .scalar, defaultValue: "49152", help: "lowest relay port")
    static let turnRelayPortMax = ConfigKey(name: "turn.relay_port_max", kind: .scalar, defaultValue: "65535", help: "highest relay port")
    static let turnDefaultLifetime = ConfigKey(name: "turn.default_lifetime", kind: .scalar, defaultValue: "600", help: "allocation lifetime in seconds when the client asks for less")
    static let turnMaxLifetime = ConfigKey(name: "turn.max_lifetime", kind: .scalar, defaultValue: "3600", help: "cap on the allocation lifetime in seconds")
    static let turnPermissionLifetime = ConfigKey(name: "turn.permission_lifetime", kind: .scalar, defaultValue: "300", help: "permission lifetime in seconds")
    static let turnChannelLifetime = ConfigKey(name: "turn.channel_lifetime", kind: .scalar, defaultValue: "600", help: "channel binding lifetime in seconds")
    static let turnNonceLifetime = ConfigKey(name: "turn.nonce_lifetime", kind: .scalar, defaultValue: "600", help: "seconds before a nonce is stale (438)")
    static let turnNonceSecret = ConfigKey(name: "turn.nonce_secret", kind: .scalar, defaultValue: "",
                            help: "key for stateless nonces; empty = random per process", secret: true)
    static let turnMaxAllocations = ConfigKey(name: "turn.max_allocations", kind: .scalar, defaultValue: "10000", help: "allocations in total (508 beyond); 0 = unlimited", reloadable: true)
    static let turnMaxAllocationsPerUser = ConfigKey(name: "turn.max_allocations_per_user", kind: .scalar, defaultValue: "0", help: "allocations per username (486 beyond); 0 = unlimited", reloadable: true)
    static let turnMaxPermissionsPerAllocation = ConfigKey(name: "turn.max_permissions_per_allocation", kind: .scalar, defaultValue: "64", help: "permissions per allocation (508 beyond)", reloadable: true)
    static let turnMaxChannelsPerAllocation = ConfigKey(name: "turn.max_channels_per_allocation", kind: .scalar, defaultValue: "128", help: "channel bindings per allocation (508 beyond)", reloadable: true)
    static let turnMaxConnectionsPerSource = ConfigKey(name: "turn.max_connections_per_source", kind: .scalar, defaultValue: "256",
                            help: "open TCP/TLS connections to the TURN listeners per source address (IPv6 by /64); more are closed at once and counted; 0 = no limit", reloadable: true)
    static let turnThreads = ConfigKey(name: "turn.threads", kind: .scalar, defaultValue: "0", help: "UDP listener sockets/event loops per address; 0 = half the cores, at least 1 (the kernel needs the rest: see BENCHMARKS.md)")
    static let turnUdpGso = ConfigKey(name: "turn.udp_gso", kind: .scalar, defaultValue: "true",
                            help: "send runs of same-sized datagrams to one destination as one UDP GSO write (Linux 4.18+; ignored where unsupported)")
    static let turnTcp = ConfigKey(name: "turn.tcp", kind: .scalar, defaultValue: "true", help: "also serve STUN/TURN over TCP on turn.port")
    static let turnTlsPort = ConfigKey(name: "turn.tls_port", kind: .scalar, defaultValue: "5349", help: "STUN/TURN over TLS port (when turn.tls_cert and turn.tls_key are set)")
    static let turnTlsCert = ConfigKey(name: "turn.tls_cert", kind: .scalar, defaultValue: "",
                            help: "PEM certificate chain for TURN over TLS; empty = the TLS listener is off; the file is re-read on SIGHUP (a new path needs a restart)")
    static let turnTlsKey = ConfigKey(name: "turn.tls_key", kind: .scalar, defaultValue: "", help: "PEM private key for turn.tls_cert; re-read on SIGHUP")
    static let turnStreamTimeout = ConfigKey(name: "turn.stream_timeout", kind: .scalar, defaultValue: "10",
                            help: "seconds a TCP/TLS client may leave a message incomplete before it is disconnected")
    static let turnStreamIdleTimeout = ConfigKey(name: "turn.stream_idle_timeout", kind: .scalar, defaultValue: "30",
                            help: "seconds a TCP/TLS connection without an allocation may go without a complete message (from its accept: a silent client or a stalled TLS handshake too) before it is disconnected; 0 = never")
    static let turnStrictChannelNumbers = ConfigKey(name: "turn.strict_channel_numbers", kind: .scalar, defaultValue: "false",
                            help: "accept only RFC 8656 channel numbers 0x4000-0x4FFF in ChannelBind; false also accepts RFC 5766's 0x5000-0x7FFF (coturn's clients use them)")
    static let turnBandwidthLimit = ConfigKey(name: "turn.bandwidth_limit", kind: .scalar, defaultValue: "0",
                            help: "bytes per second one allocation may relay (both directions together); excess is dropped and counted; 0 = no cap. Not applied to RFC 6062 TCP relays", reloadable: true)
    static let turnUnauthenticatedRate = ConfigKey(name: "turn.unauthenticated_rate", kind: .scalar, defaultValue: "100",
                            help: "STUN/TURN requests without MESSAGE-INTEGRITY (Binding, the first Allocate) per second per source address (IPv6 by /64); excess is dropped and counted; 0 = no limit", reloadable: true)
    static let turnUnauthenticatedBurst = ConfigKey(name: "turn.unauthenticated_burst", kind: .scalar, defaultValue: "200",
                            help: "bursts allowed above turn.unauthenticated_rate", reloadable: true)
    static let turnAllowPeers = ConfigKey(name: "turn.allow_peers", kind: .list, defaultValue: "",
                            help: "CIDRs peers may be in even if denied (takes precedence over deny_peers and the built-in list)", reloadable: true)
    static let turnDenyPeers = ConfigKey(name: "turn.deny_peers", kind: .list, defaultValue: "", help: "CIDRs refused in addition to the built-in private/loopback ranges", reloadable: true)
    static let signalingEnabled = ConfigKey(name: "signaling.enabled", kind: .scalar, defaultValue: "true", help: "run the WebSocket signaling server; false = TURN only, the signaling port then serves only /healthz, /readyz, /api/v1/welcome and the admin endpoints (firewall.sh leaves it closed)")
    static let signalingListen = ConfigKey(name: "signaling.listen", kind: .scalar, defaultValue: "0.0.0.0", help: "address the signaling HTTP server binds to")
    static let signalingPort = ConfigKey(name: "signaling.port", kind: .scalar, defaultValue: "8080", help: "signaling HTTP/WebSocket port")
    static let signalingThreads = ConfigKey(name: "signaling.threads", kind: .scalar, defaultValue: "0",
                            help: "event loop threads of the signaling port; 0 = one per core (see BENCHMARKS.md)")
    static let signalingTlsCert = ConfigKey(name: "signaling.tls_cert", kind: .scalar, defaultValue: "",
                            help: "PEM certificate chain; with signaling.tls_key the port serves https/wss (TLS 1.2+); the file is re-read on SIGHUP (a new path needs a restart)")
    static let signalingTlsKey = ConfigKey(name: "signaling.tls_key", kind: .scalar, defaultValue: "", help: "PEM private key for signaling.tls_cert; re-read on SIGHUP")
    static let signalingHttpTimeout = ConfigKey(name: "signaling.http_timeout", kind: .scalar, defaultValue: "30",
                            help: "seconds an HTTP connection has to send a complete request head after it connects (a stalled TLS handshake included) or, kept alive, after its last response, before it is closed; 0 = never", reloadable: true)
    static let signalingAuthTimeout = ConfigKey(name: "signaling.auth_timeout", kind: .scalar, defaultValue: "10",
                            help: "seconds a socket has to send authenticate before it is closed", reloadable: true)
    static let signalingMaxMessageSize = ConfigKey(name: "signaling.max_message_size", kind: .scalar, defaultValue: "65536",
                            help: "largest message in bytes; larger ones are discarded with error message_too_large", reloadable: true)
    static let signalingMaxPeersPerRoom = ConfigKey(name: "signaling.max_peers_per_room", kind: .scalar, defaultValue: "0", help: "peers per room (room_full beyond); 0 = unlimited", reloadable: true)
    static let signalingMaxConnections = ConfigKey(name: "signaling.max_connections", kind: .scalar, defaultValue: "20000",
                            help: "open WebSocket connections (server_full beyond); 0 = unlimited", reloadable: true)
    static let signalingKeepaliveInterval = ConfigKey(name: "signaling.keepalive_interval", kind: .scalar, defaultValue: "30",
                            help: "seconds between WebSocket pings; a peer that missed the previous pong is closed; 0 disables", reloadable: true)
    static let signalingIdleTimeout = ConfigKey(name: "signaling.idle_timeout", kind: .scalar, defaultValue: "0",
                            help: "close a socket that sent no message for this many seconds; 0 disables", reloadable: true)
    static let signalingDuplicateUsername = ConfigKey(name: "signaling.duplicate_username", kind: .scalar, defaultValue: "allow",
                            help: "allow: several sessions may share a username; replace: a new login closes the older session in that room", reloadable: true)
    static let signalingResumeWindow = ConfigKey(name: "signaling.resume_window", kind: .scalar, defaultValue: "30",
                            help: "seconds a session whose socket went away without leaving (no close frame, a network error, a keepalive timeout, a close code other than 1000/1001) is held for a resume: the others are not told left, messages to it are queued, its TURN credentials and allocations stay; 0 = it ends at once", reloadable: true)
    static let signalingResumeQueueMessages = ConfigKey(name: "signaling.resume_queue_messages", kind: .scalar, defaultValue: "256",
                            help: "messages a held session queues for its resume; one more ends the session as a leave", reloadable: true)
    static let signalingResumeQueueBytes = ConfigKey(name: "signaling.resume_queue_bytes", kind: .scalar, defaultValue: "262144",
                            help: "bytes a held session queues for its resume; more ends the session as a leave", reloadable: true)
    static let signalingOutboundBuffer = ConfigKey(name: "signaling.outbound_buffer", kind: .scalar, defaultValue: "1048576",
                            help: "bytes waiting to be written to one peer (beyond the kernel's socket buffer) before it is disconnected as a slow consumer", reloadable: true)
    static let signalingAbuseLimit = ConfigKey(name: "signaling.abuse_limit", kind: .scalar, defaultValue: "20",
                            help: "bad messages allowed per signaling.abuse_window before rate_limited and close", reloadable: true)
    static let signalingAbuseWindow = ConfigKey(name: "signaling.abuse_window", kind: .scalar, defaultValue: "10", help: "seconds over which bad messages are counted", reloadable: true)
    static let signalingStaticDir = ConfigKey(name: "signaling.static_dir", kind: .scalar, defaultValue: "",
                            help: "folder served at / and /room/NAME (the example client); empty = ./examples/simple, else the one in the source checkout; none = off")
    static let signalingIceHost = ConfigKey(name: "signaling.ice_host", kind: .scalar, defaultValue: "",
                            help: "host put in the ice_servers URLs; empty = turn.external_ip if set, else the host the client connected to")
    static let signalingIceCredentialLifetime = ConfigKey(name: "signaling.ice_credential_lifetime", kind: .scalar, defaultValue: "86400",
                            help: "seconds the TURN credentials minted per session stay valid (they are also revoked when the session ends)", reloadable: true)
    static let signalingTrustedProxies = ConfigKey(name: "signaling.trusted_proxies", kind: .list, defaultValue: "",
                            help: "addresses or CIDRs of reverse proxies in front of the signaling port whose X-Forwarded-For gives the client's address (for the auth throttle); empty = the header is ignored", reloadable: true)
    static let apiToken = ConfigKey(name: "api.token", kind: .scalar, defaultValue: "",
                            help: "bearer token for the /api/ server API; empty = the API refuses every request (401)", reloadable: true, secret: true)
    static let adminAllow = ConfigKey(name: "admin.allow", kind: .list, defaultValue: "127.0.0.0/8,::1",
                            help: "addresses or CIDRs the admin endpoints (/metrics, /api/stats, /api/v1/log_level, /dashboard) answer without the API token; a request with Forwarded/X-Forwarded-For never counts as from them", reloadable: true)
    static let adminMaxEventStreams = ConfigKey(name: "admin.max_event_streams", kind: .scalar, defaultValue: "16",
                            help: "dashboard live feeds (/dashboard/events) open at once; more are answered 503", reloadable: true)
    static let webhookUrl = ConfigKey(name: "webhook.url", kind: .scalar, defaultValue: "", help: "http(s) URL POSTed on every join and leave; empty = off")
    static let webhookSecret = ConfigKey(name: "webhook.secret", kind: .scalar, defaultValue: "",
                            help: "key of the X-Webrtc-Signature: sha256=HEX header (HMAC-SHA256 of the body); empty = unsigned", secret: true)
    static let webhookTimeout = ConfigKey(name: "webhook.timeout", kind: .scalar, defaultValue: "5", help: "seconds before a webhook POST counts as failed")
    static let authUsers = ConfigKey(name: "auth.users", kind: .map, defaultValue: "", help: "static users: name → password", reloadable: true, secret: true)
    static let authSecrets = ConfigKey(name: "auth.secrets", kind: .list, defaultValue: "",
                            help: "shared secrets for ephemeral TURN REST credentials; the first mints, all verify", reloadable: true, secret: true)
    static let authDemoLogin = ConfigKey(name: "auth.demo_login", kind: .scalar, defaultValue: "true",
                            help: "with no auth.users, auth.secrets, auth.sqlite, auth.postgresql, auth.http_lookup or join token keys, log in as user demo with a random password made at start and logged once with a ready URL; any configured credential turns it off; false = never", reloadable: true)
    static let authMaxEphemeralLifetime = ConfigKey(name: "auth.max_ephemeral_lifetime", kind: .scalar, defaultValue: "86400",
                            help: "seconds ahead an ephemeral TURN REST credential's expiry may lie (plus 300 s for clock differences); later ones are refused as unknown (401); 0 = no ceiling", reloadable: true)
    static let authSqlite = ConfigKey(name: "auth.sqlite", kind: .scalar, defaultValue: "",
                            help: "path of a coturn SQLite user database (table turnusers_lt, as turnadmin -a -b FILE writes it), opened read-only; users are looked up after auth.users and auth.secrets; empty = off")
    static let authPostgresql = ConfigKey(name: "auth.postgresql", kind: .scalar, defaultValue: "",
                            help: "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or ?host=/unix/socket/dir) of a coturn user database (table turnusers_lt); asked after auth.sqlite; empty = off", secret: true)
    static let authHttpLookup = ConfigKey(name: "auth.http_lookup", kind: .scalar, defaultValue: "",
                            help: "http:// or https:// URL of the app backend's password lookup, POSTed {realm, timestamp, username} and answering 200 {password | passwords | hmackey}, 404 unknown, 410 expired; asked after auth.sqlite; empty = off")
    static let authHttpLookupSecret = ConfigKey(name: "auth.http_lookup_secret", kind: .scalar, defaultValue: "",
                            help: "key of the lookup request's X-Webrtc-Signature: sha256=HEX header (HMAC-SHA256 of the body); empty = unsigned", secret: true)
    static let authMethods = ConfigKey(name: "auth.methods", kind: .list, defaultValue: "password,token",
                            help: "how signaling's authenticate may log in: password (username and password), token (a signed join token; needs auth.jwt_keys or auth.jwks_file)", reloadable: true)
    static let authJwtKeys = ConfigKey(name: "auth.jwt_keys", kind: .map, defaultValue: "",
                            help: "HS256 keys for join tokens: kid → secret (at least 32 bytes); a token's kid header picks one, a token without one may match any (rotate by adding the new key first)", reloadable: true, secret: true)
    static let authJwksFile = ConfigKey(name: "auth.jwks_file", kind: .scalar, defaultValue: "",
                            help: "JWKS file of public keys (ES256, EdDSA) for join tokens, re-read on reload; empty = none", reloadable: true)
    static let authTokenLeeway = ConfigKey(name: "auth.token_leeway", kind: .scalar, defaultValue: "10",
                            help: "seconds of clock skew allowed on a join token's exp and nbf", reloadable: true)
    static let authLookupCacheTTL = ConfigKey(name: "auth.lookup_cache_ttl", kind: .scalar, defaultValue: "60",
                            help: "seconds an answer of auth.sqlite, auth.http_lookup or a plugged-in lookup is kept, found or unknown (a user added or removed counts after it); 0 = not kept", reloadable: true)
    static let authLookupTimeout = ConfigKey(name: "auth.lookup_timeout", kind: .scalar, defaultValue: "5",
                            help: "seconds a lookup may take; longer, or an error, fails that login (TURN 401, signaling unauthorized with reason unavailable), uncached", reloadable: true)
    static let authLookupMaxInFlight = ConfigKey(name: "auth.lookup_max_in_flight", kind: .scalar, defaultValue: "256",
                            help: "different user names being looked up at once, at most; past it a TURN request is dropped (the client retransmits) and a signaling login is refused with reason unavailable", reloadable: true)
    static let authThrottleFreeFailures = ConfigKey(name: "auth.throttle_free_failures", kind: .scalar, defaultValue: "5",
                            help: "failed logins (signaling, TURN 401/441) per source address (IPv6 by /64) answered at once within auth.throttle_window; later ones are answered after a growing delay; 0 = no delay", reloadable: true)
    static let authThrottleWindow = ConfigKey(name: "auth.throttle_window", kind: .scalar, defaultValue: "300",
                            help: "seconds after the last failure before a source's failures are forgotten", reloadable: true)
    static let authThrottleBaseDelay = ConfigKey(name: "auth.throttle_base_delay", kind: .scalar, defaultValue: "0.25",
                            help: "seconds of delay for the first throttled failure; doubles with each further one", reloadable: true)
    static let authThrottleMaxDelay = ConfigKey(name: "auth.throttle_max_delay", kind: .scalar, defaultValue: "4", help: "cap on the delay, in seconds", reloadable: true)
    static let authBlockAfter = ConfigKey(name: "auth.block_after", kind: .scalar, defaultValue: "20",
                            help: "failures within the window after which the source is refused without a password check; 0 = never", reloadable: true)
    static let authBlockDuration = ConfigKey(name: "auth.block_duration", kind: .scalar, defaultValue: "600", help: "seconds a blocked source stays blocked", reloadable: true)
    static let clusterNats = ConfigKey(name: "cluster.nats", kind: .list, defaultValue: "",
                            help: "NATS servers (nats://host:4222, tls://host:4222, credentials in the URL allowed) that join this instance to a cluster; empty = a single box, no NATS needed")
    static let clusterName = ConfigKey(name: "cluster.name", kind: .scalar, defaultValue: "webrtc",
                            help: "instances with the same name form one signaling service (letters, digits, - and _)")
    static let clusterInstanceId = ConfigKey(name: "cluster.instance_id", kind: .scalar, defaultValue: "",
                            help: "this instance's id, unique in the cluster (letters, digits, - and _); empty = the host name. A second instance with an id in use refuses to start")
    static let clusterSecret = ConfigKey(name: "cluster.secret", kind: .scalar, defaultValue: "",
                            help: "key shared by every instance, from which the TURN credentials of signaling sessions are derived so that any instance accepts them; required with cluster.nats", secret: true)
    static let clusterInstanceTimeout = ConfigKey(name: "cluster.instance_timeout", kind: .scalar, defaultValue: "5",
                            help: "seconds without a heartbeat after which an instance is declared dead: its peers are left and their TURN credentials refused everywhere")
    static let clusterHeartbeatInterval = ConfigKey(name: "cluster.heartbeat_interval", kind: .scalar, defaultValue: "1", help: "seconds between this instance's heartbeats")
    static let clusterIceServers = ConfigKey(name: "cluster.ice_servers", kind: .scalar, defaultValue: "self",
                            help: "self: ice_servers name this instance's TURN; least_loaded: the TURN of the instance with the fewest allocations for its capacity; turn_only: the least loaded TURN-only instance (signaling.enabled false), this one's own while none is up")
    static let clusterAdvertiseHost = ConfigKey(name: "cluster.advertise_host", kind: .scalar, defaultValue: "",
                            help: "host clients reach this instance's TURN at, told to the other instances for cluster.ice_servers least_loaded; empty = signaling.ice_host, else turn.external_ip, else the relayed address")
    static let clusterNatsUser = ConfigKey(name: "cluster.nats_user", kind: .scalar, defaultValue: "", help: "NATS user (with cluster.nats_password) for servers whose URL carries no credentials")
    static let clusterNatsPassword = ConfigKey(name: "cluster.nats_password", kind: .scalar, defaultValue: "", help: "NATS password", secret: true)
    static let clusterNatsToken = ConfigKey(name: "cluster.nats_token", kind: .scalar, defaultValue: "", help: "NATS token, instead of a user and password", secret: true)
    static let clusterNatsTls = ConfigKey(name: "cluster.nats_tls", kind: .scalar, defaultValue: "false",
                            help: "require TLS to NATS even where the server does not ask for it (a server that asks gets TLS anyway)")
    static let clusterNatsTlsCa = ConfigKey(name: "cluster.nats_tls_ca", kind: .scalar, defaultValue: "",
                            help: "PEM file of the CA (or certificate) NATS's certificate is checked against; empty = the system's trust roots")
    static let clusterBuffer = ConfigKey(name: "cluster.buffer", kind: .scalar, defaultValue: "8388608",
                            help: "bytes of cluster messages held while NATS is unreachable or slow; beyond, they are dropped and counted")
    static let shutdownGracePeriod = ConfigKey(name: "shutdown.grace_period", kind: .scalar, defaultValue: "30",
                            help: "seconds TURN allocations keep relaying after SIGTERM (signaling peers get shutdown at once; new allocations are refused); the process exits earlier when the last allocation is gone")
}
