import Auth
import ServerTLS
import Cluster
import Foundation
import Logging
import NIOSSL
import Signaling
import StunTurn

/// The validated configuration of the whole process: every key of docs/configuration.md. Loaded in
/// layers (`load(file:environment:flags:)`) or made in code from key/value pairs (`init(_:)`).
public struct ServerSettings: Sendable {
    public var logLevel: Logger.Level = .info
    public var turn = TurnConfiguration()
    public var credentials = CredentialStore.Settings()
    /// auth.demo_login: whether the first run's demo login may apply (`DemoLogin`).
    var demoLoginAllowed = true
    /// auth.sqlite, auth.http_lookup and the lookup cache (`LookupSettings`).
    var lookups = LookupSettings()
    /// auth.methods and the join token keys (`TokenSettings`).
    var tokens = TokenSettings()
    /// signaling.enabled (false: TURN only; the signaling port keeps health and admin endpoints).
    var signalingEnabled: Bool { signaling.webSocketEnabled }
    public var signaling = SignalingConfiguration()
    var throttle = AuthThrottle.Settings()
    /// The signaling port's certificate, re-read on SIGHUP like TURN's.
    var signalingTLS: ReloadableTLSContext?
    /// Set with cluster.nats: this instance is one of several (its advert is completed at start).
    var cluster: ClusterConfiguration?
    /// cluster.advertise_host, when set.
    var clusterAdvertiseHost: String?
    /// cluster.secret (set with cluster.nats).
    var clusterSecret: String?
    /// The merged raw values every setting above was read from (for check-config and reload).
    var raw: [String: RawValue] = [:]
    /// Where `load` read them from, for a reload to read again; nil for settings made in code.
    var origin: (file: String?, environment: [String: String], flags: [String])?

    /// Merges the layers (defaults < file < environment < flags) and validates every key; a bad one
    /// throws `ConfigError` naming it.
    public static func load(file: String?, environment: [String: String], flags: [String]) throws -> ServerSettings {
        var raw = try defaults()
        if let file {
            let fromFile = try ConfigSources.file(at: file)
            for k in fromFile.keys where ConfigKeys.byName[k] == nil {
                throw ConfigError(key: k, problem: "unknown setting in \(file) (see docs/configuration.md)")
            }
            raw.merge(fromFile) { $1 }
        }
        raw.merge(try ConfigSources.environment(environment)) { $1 }
        raw.merge(try ConfigSources.flags(flags)) { $1 }
        var settings = try ServerSettings(raw)
        settings.origin = (file, environment, flags)
        return settings
    }

    /// Every key's embedded default, the bottom layer.
    static func defaults() throws -> [String: RawValue] {
        var raw: [String: RawValue] = [:]
        for key in ConfigKeys.all { raw[key.name] = try key.rawFromString(key.defaultValue) }
        return raw
    }

    /// The embedded defaults with `values` over them, keyed and written as on the command line
    /// (`["signaling.port": "0", "auth.users": "alice=secret"]`); an unknown key or bad value throws
    /// `ConfigError`.
    public init(_ values: [String: String] = [:]) throws {
        var raw = try Self.defaults()
        for (name, value) in values {
            guard let key = ConfigKeys.byName[name] else { throw ConfigError(key: name, problem: "unknown setting (see docs/configuration.md)") }
            raw[name] = try key.rawFromString(value)
        }
        try self.init(raw)
    }

    init(_ raw: [String: RawValue]) throws {
        self.raw = raw
        let r = RawReader(raw)
        guard let level = Logger.Level(rawValue: try r.string(.logLevel)) else {
            throw ConfigError(.logLevel, problem: "expected one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = level
        turn.realm = try r.string(.realm)
        guard !turn.realm.isEmpty, turn.realm.utf8.count < 128 else {
            throw ConfigError(.realm, problem: "must be 1 to 127 characters")
        }
        turn.software = try r.string(.software)
        turn.listenAddresses = try r.list(.turnListen)
        guard !turn.listenAddresses.isEmpty else { throw ConfigError(.turnListen, problem: "needs at least one address") }
        for a in turn.listenAddresses where IPAddress(a) == nil {
            throw ConfigError(.turnListen, problem: "'\(a)' is not an IP address")
        }
        if raw[ConfigKey.turnListen.name] == (try ConfigKey.turnListen.rawFromString(ConfigKey.turnListen.defaultValue)) {
            turn.optionalListenAddresses = ["::"]  // the default's IPv6 half is skipped where IPv6 is missing
        }
        turn.port = try r.int(.turnPort, 0...65535)
        turn.relayBindAddress = try r.string(.turnRelayAddress)
        guard IPAddress(turn.relayBindAddress) != nil else {
            throw ConfigError(.turnRelayAddress, problem: "'\(turn.relayBindAddress)' is not an IP address")
        }
        let external = try r.string(.turnExternalIp)
        if !external.isEmpty {
            guard let ip = IPAddress(external) else {
                throw ConfigError(.turnExternalIp, problem: "'\(external)' is not an IP address")
            }
            turn.externalAddress = ip
        }
        turn.ipv6Relays = try r.bool(.turnIpv6Relays)
        turn.relayBindAddress6 = try r.string(.turnRelayAddress6)
        guard let relay6 = IPAddress(turn.relayBindAddress6), relay6.isIPv6 else {
            throw ConfigError(.turnRelayAddress6, problem: "'\(turn.relayBindAddress6)' is not an IPv6 address")
        }
        let external6 = try r.string(.turnExternalIp6)
        if !external6.isEmpty {
            guard let ip = IPAddress(external6), ip.isIPv6 else {
                throw ConfigError(.turnExternalIp6, problem: "'\(external6)' is not an IPv6 address")
            }
            turn.externalAddress6 = ip
        }
        let minPort = try r.int(.turnRelayPortMin, 1...65535)
        let maxPort = try r.int(.turnRelayPortMax, 1...65535)
        guard minPort <= maxPort else {
            throw ConfigError(.turnRelayPortMin, problem: "\(minPort) is above turn.relay_port_max \(maxPort)")
        }
        turn.relayPorts = UInt16(minPort)...UInt16(maxPort)
        turn.defaultLifetime = UInt32(try r.int(.turnDefaultLifetime, 1...86400))
        turn.maxLifetime = UInt32(try r.int(.turnMaxLifetime, 1...86400))
        guard turn.maxLifetime >= turn.defaultLifetime else {
            throw ConfigError(.turnMaxLifetime, problem: "must be at least turn.default_lifetime (\(turn.defaultLifetime))")
        }
        turn.permissionLifetime = Int64(try r.int(.turnPermissionLifetime, 1...86400))
        turn.channelLifetime = Int64(try r.int(.turnChannelLifetime, 1...86400))
        turn.nonceLifetime = try r.int(.turnNonceLifetime, 1...86400)
        let nonceSecret = try r.string(.turnNonceSecret)
        if !nonceSecret.isEmpty { turn.nonceSecret = Array(nonceSecret.utf8) }
        turn.maxAllocations = try r.int(.turnMaxAllocations, 0...10_000_000)
        turn.maxAllocationsPerUser = try r.int(.turnMaxAllocationsPerUser, 0...10_000_000)
        turn.maxPermissionsPerAllocation = try r.int(.turnMaxPermissionsPerAllocation, 1...100_000)
        turn.limits.maxChannelsPerAllocation = try r.int(.turnMaxChannelsPerAllocation, 1...16384)
        turn.limits.maxStreamConnectionsPerSource = try r.int(.turnMaxConnectionsPerSource, 0...10_000_000)
        let threads = try r.int(.turnThreads, 0...256)
        turn.threads = threads == 0 ? TurnConfiguration.defaultThreads : threads
        turn.udpGSO = try r.bool(.turnUdpGso)
        turn.tcp = try r.bool(.turnTcp)
        turn.tlsPort = try r.int(.turnTlsPort, 0...65535)
        let turnCert = try r.string(.turnTlsCert), turnKey = try r.string(.turnTlsKey)
        guard turnCert.isEmpty == turnKey.isEmpty else {
            throw ConfigError(turnCert.isEmpty ? .turnTlsCert : .turnTlsKey, problem: "turn.tls_cert and turn.tls_key go together")
        }
        if !turnCert.isEmpty {
            do {
                turn.tls = try ReloadableTLSContext(certificatePath: turnCert, keyPath: turnKey)
            } catch {
                throw ConfigError(.turnTlsCert, problem: "cannot use '\(turnCert)' with '\(turnKey)': \(error)")
            }
        }
        let streamTimeout = try r.seconds(.turnStreamTimeout, 0.1...3600)
        turn.streamIncompleteTimeout = .milliseconds(Int64(streamTimeout / .milliseconds(1)))
        let streamIdle = try r.seconds(.turnStreamIdleTimeout, 0...86400)
        turn.streamIdleTimeout = .milliseconds(Int64(streamIdle / .milliseconds(1)))
        turn.channelNumbers = try r.bool(.turnStrictChannelNumbers) ? ChannelData.channelRange : ChannelData.legacyChannelRange
        turn.peerPolicy = PeerAddressPolicy(allow: try r.cidrs(.turnAllowPeers), deny: try r.cidrs(.turnDenyPeers))
        turn.limits.bandwidthLimit = try r.int(.turnBandwidthLimit, 0...(1 << 40))
        turn.limits.unauthenticatedRate = try r.int(.turnUnauthenticatedRate, 0...10_000_000)
        turn.limits.unauthenticatedBurst = try r.int(.turnUnauthenticatedBurst, 1...10_000_000)
        let grace = try r.seconds(.shutdownGracePeriod, 0...86400)
        turn.drainGracePeriod = .milliseconds(Int64(grace / .milliseconds(1)))
        throttle.freeFailures = try r.int(.authThrottleFreeFailures, 0...1_000_000)
        throttle.window = try r.seconds(.authThrottleWindow, 1...86400).timeInterval
        throttle.baseDelay = try r.seconds(.authThrottleBaseDelay, 0...60).timeInterval
        throttle.maxDelay = try r.seconds(.authThrottleMaxDelay, 0...60).timeInterval
        throttle.blockAfter = try r.int(.authBlockAfter, 0...1_000_000)
        throttle.blockDuration = try r.seconds(.authBlockDuration, 1...(30 * 86400)).timeInterval
        try readSignaling(r)
        try readCluster(r)
        credentials.users = try r.map(.authUsers)
        credentials.sharedSecrets = try r.list(.authSecrets)
        demoLoginAllowed = try r.bool(.authDemoLogin)
        credentials.realm = turn.realm
        lookups.sqlitePath = try r.string(.authSqlite)
        let lookupURL = try r.string(.authHttpLookup)
        if !lookupURL.isEmpty {
            guard let url = URL(string: lookupURL), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  url.host != nil else {
                throw ConfigError(.authHttpLookup, problem: "expected an http:// or https:// URL, got '\(lookupURL)'")
            }
            lookups.httpURL = url
        }
        lookups.httpSecret = try r.string(.authHttpLookupSecret)
        lookups.chain.cacheTTL = try r.seconds(.authLookupCacheTTL, 0...86400).timeInterval
        lookups.chain.timeout = try r.seconds(.authLookupTimeout, 0.05...300).timeInterval
        lookups.chain.maxInFlight = try r.int(.authLookupMaxInFlight, 1...1_000_000)
        tokens = try TokenSettings(methods: try r.list(.authMethods), hmacKeys: try r.map(.authJwtKeys),
                                   jwksPath: try r.string(.authJwksFile), leeway: try r.seconds(.authTokenLeeway, 0...3600))
        signaling.passwordLogins = tokens.passwords
        lookups.postgresURL = try r.string(.authPostgresql)
        credentials.maxEphemeralLifetime = try r.seconds(.authMaxEphemeralLifetime, 0...(3650 * 86400)).timeInterval
        for (name, _) in credentials.users where name.isEmpty || name.utf8.count > 508 {
            throw ConfigError(.authUsers, problem: "user names must be 1 to 508 bytes")
        }
    }
}

extension ServerSettings {
    /// What a firewall must let in for this configuration: (tcp|udp, port or first:last, purpose).
    var listeningPorts: [(proto: String, port: String, purpose: String)] {
        var out: [(String, String, String)] = []
        if signalingEnabled { out.append(("tcp", "\(signaling.port)", "signaling")) }
        out.append(("udp", "\(turn.port)", "stun-turn"))
        if turn.tcp { out.append(("tcp", "\(turn.port)", "stun-turn")) }
        if turn.tls != nil { out.append(("tcp", "\(turn.tlsPort)", "stun-turn-tls")) }
        let relayRange = "\(turn.relayPorts.lowerBound):\(turn.relayPorts.upperBound)"
        out.append(("udp", relayRange, "relay"))
        // RFC 6062 TCP allocations (asked for over TCP or TLS) listen on relay ports for their peers.
        if turn.tcp || turn.tls != nil { out.append(("tcp", relayRange, "tcp-relay")) }
        return out
    }

    fileprivate mutating func readCluster(_ r: RawReader) throws {
        let urls = try r.list(.clusterNats)
        guard !urls.isEmpty else { return }
        var servers: [NATSServerURL] = []
        for u in urls {
            guard let url = NATSServerURL(u) else {
                throw ConfigError(.clusterNats, problem: "'\(maskingCredentials(u))' is not a nats:// or tls:// URL")
            }
            servers.append(url)
        }
        var nats = NATSClientConfiguration(servers: servers)
        let user = try r.string(.clusterNatsUser), password = try r.string(.clusterNatsPassword)
        let token = try r.string(.clusterNatsToken)
        if !user.isEmpty { nats.user = user; nats.password = password }
        if !token.isEmpty { nats.token = token }
        nats.requireTLS = try r.bool(.clusterNatsTls)
        let ca = try r.string(.clusterNatsTlsCa)
        if !ca.isEmpty {
            guard FileManager.default.isReadableFile(atPath: ca) else { throw ConfigError(.clusterNatsTlsCa, problem: "cannot read '\(ca)'") }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(ca)
            nats.tls = tls
        }
        nats.bufferLimit = try r.int(.clusterBuffer, 65536...(1 << 30))
        let name = try r.string(.clusterName)
        guard ClusterNode.isValidToken(name) else {
            throw ConfigError(.clusterName, problem: "'\(name)' must be 1 to 64 letters, digits, - or _")
        }
        var id = try r.string(.clusterInstanceId)
        if id.isEmpty { id = ClusterNode.token(from: ProcessInfo.processInfo.hostName) }
        guard ClusterNode.isValidToken(id) else {
            throw ConfigError(.clusterInstanceId, problem: "'\(id)' must be 1 to 64 letters, digits, - or _")
        }
        let secret = try r.string(.clusterSecret)
        guard secret.utf8.count >= 16 else {
            throw ConfigError(.clusterSecret, problem: "required with cluster.nats: at least 16 characters shared by every instance (e.g. openssl rand -hex 32)")
        }
        var c = ClusterConfiguration(nats: nats, instanceID: id, advert: InstanceAdvert(address: "", turn: nil))
        c.name = name
        c.instanceTimeout = try r.seconds(.clusterInstanceTimeout, 0.5...3600)
        c.heartbeatInterval = try r.seconds(.clusterHeartbeatInterval, 0.05...60)
        guard c.heartbeatInterval * 2 <= c.instanceTimeout else {
            throw ConfigError(.clusterInstanceTimeout, problem: "must be at least twice cluster.heartbeat_interval")
        }
        let choice = try r.string(.clusterIceServers)
        guard let ice = ClusterConfiguration.IceServerChoice(rawValue: choice) else {
            throw ConfigError(.clusterIceServers, problem: "expected self, least_loaded or turn_only, got '\(choice)'")
        }
        c.iceServers = ice
        c.credentialLifetime = signaling.iceServers.credentialLifetime
        let advertise = try r.string(.clusterAdvertiseHost)
        clusterAdvertiseHost = advertise.isEmpty ? nil : advertise
        clusterSecret = secret
        cluster = c
    }

    fileprivate mutating func readSignaling(_ r: RawReader) throws {
        var s = SignalingConfiguration()
        s.webSocketEnabled = try r.bool(.signalingEnabled)
        s.listenAddress = try r.string(.signalingListen)
        guard IPAddress(s.listenAddress) != nil else {
            throw ConfigError(.signalingListen, problem: "'\(s.listenAddress)' is not an IP address")
        }
        s.port = try r.int(.signalingPort, 0...65535)
        s.threads = try r.int(.signalingThreads, 0...256)
        let cert = try r.string(.signalingTlsCert), key = try r.string(.signalingTlsKey)
        guard cert.isEmpty == key.isEmpty else {
            throw ConfigError(cert.isEmpty ? .signalingTlsCert : .signalingTlsKey,
                              problem: "signaling.tls_cert and signaling.tls_key go together")
        }
        for (k, path) in [(ConfigKey.signalingTlsCert, cert), (.signalingTlsKey, key)] where !path.isEmpty {
            guard FileManager.default.isReadableFile(atPath: path) else { throw ConfigError(k, problem: "cannot read '\(path)'") }
        }
        if !cert.isEmpty {
            s.tlsCertificatePath = cert
            s.tlsKeyPath = key
            do {
                let context = try ReloadableTLSContext(certificatePath: cert, keyPath: key)
                signalingTLS = context
                s.tlsContext = { context.current }
            } catch {
                throw ConfigError(.signalingTlsCert, problem: "cannot use '\(cert)' with '\(key)': \(error)")
            }
        }
        s.authTimeout = try r.seconds(.signalingAuthTimeout, 0.01...3600)
        s.httpTimeout = try r.seconds(.signalingHttpTimeout, 0...3600)
        s.maxMessageSize = try r.int(.signalingMaxMessageSize, 256...(16 << 20))
        s.maxPeersPerRoom = try r.int(.signalingMaxPeersPerRoom, 0...1_000_000)
        s.maxConnections = try r.int(.signalingMaxConnections, 0...10_000_000)
        s.keepaliveInterval = try r.seconds(.signalingKeepaliveInterval, 0...86400)
        s.idleTimeout = try r.seconds(.signalingIdleTimeout, 0...86400)
        let dup = try r.string(.signalingDuplicateUsername)
        guard let policy = SignalingConfiguration.DuplicateUsernamePolicy(rawValue: dup) else {
            throw ConfigError(.signalingDuplicateUsername, problem: "expected allow or replace, got '\(dup)'")
        }
        s.duplicateUsername = policy
        s.outboundBufferLimit = try r.int(.signalingOutboundBuffer, 4096...(1 << 30))
        s.resumeWindow = try r.seconds(.signalingResumeWindow, 0...3600)
        s.resumeQueueMessages = try r.int(.signalingResumeQueueMessages, 1...100_000)
        s.resumeQueueBytes = try r.int(.signalingResumeQueueBytes, 1024...(1 << 30))
        s.abuseLimit = try r.int(.signalingAbuseLimit, 1...1_000_000)
        s.abuseWindow = try r.seconds(.signalingAbuseWindow, 0.01...86400)
        s.staticDirectory = try Self.staticDirectory(try r.string(.signalingStaticDir))
        let iceHost = try r.string(.signalingIceHost)
        s.iceServers.host = iceHost.isEmpty ? turn.externalAddress.map { "\($0)" } : iceHost
        s.iceServers.stunPort = turn.port
        s.iceServers.turnTCP = turn.tcp
        s.iceServers.turnsPort = turn.tls == nil ? nil : turn.tlsPort
        s.iceServers.credentialLifetime = TimeInterval(try r.int(.signalingIceCredentialLifetime, 60...(365 * 86400)))
        s.apiToken = try r.string(.apiToken)
        s.adminAllowed = Self.matcher(try r.cidrs(.adminAllow))
        s.maxEventStreams = try r.int(.adminMaxEventStreams, 1...10_000)
        s.trustedProxies = Self.matcher(try r.cidrs(.signalingTrustedProxies))
        let hook = try r.string(.webhookUrl)
        if !hook.isEmpty {
            guard let url = URL(string: hook), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
                throw ConfigError(.webhookUrl, problem: "expected an http:// or https:// URL, got '\(hook)'")
            }
            s.webhook = WebhookSettings(url: url, secret: try r.string(.webhookSecret),
                                        timeout: try r.seconds(.webhookTimeout, 0.1...300))
        }
        signaling = s
    }

    /// Whether a client address (4 or 16 bytes; the signaling half hands IPv4-mapped IPv6 clients over
    /// as IPv4) is in `cidrs`.
    static func matcher(_ cidrs: [CIDR]) -> @Sendable ([UInt8]) -> Bool {
        { bytes in IPAddress(bytes: bytes).map { ip in cidrs.contains { $0.contains(ip) } } ?? false }
    }

    /// `none` = off; a path = that folder (must hold index.html); empty = ./examples/simple, else the
    /// copy in the source checkout this binary was built from (so `swift run` works from anywhere).
    static func staticDirectory(_ value: String) throws -> String? {
        if value == "none" { return nil }
        let fm = FileManager.default
        if !value.isEmpty {
            guard fm.fileExists(atPath: value + "/index.html") else {
                throw ConfigError(.signalingStaticDir, problem: "no index.html in '\(value)'")
            }
            return value
        }
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/simple").path
        return ["examples/simple", checkout].first { fm.fileExists(atPath: $0 + "/index.html") }
    }
}

extension Duration {
    var timeInterval: TimeInterval { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Typed reads of raw values, each failure naming its key.
private struct RawReader {
    let raw: [String: RawValue]
    init(_ raw: [String: RawValue]) { self.raw = raw }

    func string(_ key: ConfigKey) throws -> String {
        switch raw[key.name] {
        case .scalar(let s)?: return s
        case nil: return ""
        default: throw ConfigError(key, problem: "expected a single value")
        }
    }

    func int(_ key: ConfigKey, _ range: ClosedRange<Int>) throws -> Int {
        let s = try string(key)
        guard let v = Int(s.trimmingCharacters(in: .whitespaces)), range.contains(v) else {
            throw ConfigError(key, problem: "expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(s)'")
        }
        return v
    }

    func seconds(_ key: ConfigKey, _ range: ClosedRange<Double>) throws -> Duration {
        let s = try string(key)
        guard let v = Double(s.trimmingCharacters(in: .whitespaces)), range.contains(v) else {
            throw ConfigError(key, problem: "expected seconds from \(range.lowerBound) to \(range.upperBound), got '\(s)'")
        }
        return .milliseconds(Int64((v * 1000).rounded()))
    }

    func bool(_ key: ConfigKey) throws -> Bool {
        switch try string(key).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        case let s: throw ConfigError(key, problem: "expected true or false, got '\(s)'")
        }
    }

    func list(_ key: ConfigKey) throws -> [String] {
        switch raw[key.name] {
        case .list(let l)?: return l
        case .scalar(let s)?: return s.isEmpty ? [] : s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        case nil: return []
        default: throw ConfigError(key, problem: "expected a list")
        }
    }

    func map(_ key: ConfigKey) throws -> [String: String] {
        switch raw[key.name] {
        case .map(let m)?: return m
        case .scalar("")?, nil: return [:]
        default: throw ConfigError(key, problem: "expected a mapping of name: value")
        }
    }

    func cidrs(_ key: ConfigKey) throws -> [CIDR] {
        try list(key).map {
            guard let c = CIDR($0) else { throw ConfigError(key, problem: "'\($0)' is not an address or CIDR block") }
            return c
        }
    }
}
