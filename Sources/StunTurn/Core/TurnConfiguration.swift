import NIOCore
import ServerTLS

/// Everything the STUN/TURN half needs to know, already validated by the executable's config layer.
public struct TurnConfiguration: Sendable {
    /// REALM sent in challenges and used in the long-term key (RFC 8489 §9.2).
    public var realm: String = "webrtc-server"
    /// SOFTWARE attribute in responses; empty sends none.
    public var software: String = "webrtc-server"
    /// Addresses the UDP listeners bind to.
    public var listenAddresses: [String] = ["0.0.0.0"]
    public var port: Int = 3478
    /// Local address relay sockets bind to ("0.0.0.0" for all).
    public var relayBindAddress: String = "0.0.0.0"
    /// The IP told to clients in XOR-RELAYED-ADDRESS (like coturn's external-ip); nil = discovered.
    public var externalAddress: IPAddress?
    public var relayPorts: ClosedRange<UInt16> = 49152...65535
    /// Seconds (RFC 8656 §3.2, §7.2, §9, §12).
    public var defaultLifetime: UInt32 = 600
    public var maxLifetime: UInt32 = 3600
    public var permissionLifetime: Int64 = 300
    public var channelLifetime: Int64 = 600
    /// Seconds after which a nonce is stale (438).
    public var nonceLifetime: Int = 600
    /// HMAC key for stateless nonces; random per process unless set (set it to keep nonces valid across restarts).
    public var nonceSecret: [UInt8] = (0..<32).map { _ in UInt8.random(in: 0...255) }
    /// Quotas, bandwidth cap, request rate and peer policy: the part that can change while running.
    public var limits = TurnLimits()
    public var maxAllocationsPerUser: Int { get { limits.maxAllocationsPerUser } set { limits.maxAllocationsPerUser = newValue } }
    public var maxAllocations: Int { get { limits.maxAllocations } set { limits.maxAllocations = newValue } }
    public var maxPermissionsPerAllocation: Int {
        get { limits.maxPermissionsPerAllocation }
        set { limits.maxPermissionsPerAllocation = newValue }
    }
    public var peerPolicy: PeerAddressPolicy { get { limits.peerPolicy } set { limits.peerPolicy = newValue } }
    /// After SIGTERM: how long existing allocations keep relaying (new ones are refused) before the
    /// server stops; it stops earlier when the last allocation is gone.
    public var drainGracePeriod: TimeAmount = .seconds(30)
    /// Channel numbers ChannelBind accepts: RFC 5766's 0x4000-0x7FFF by default (coturn's clients use
    /// it), RFC 8656's 0x4000-0x4FFF when strict.
    public var channelNumbers: ClosedRange<UInt16> = ChannelData.legacyChannelRange
    /// Batch same-sized datagrams to one destination into one UDP GSO write where the kernel supports it.
    public var udpGSO: Bool = true
    /// Offer IPv6 relays (REQUESTED-ADDRESS-FAMILY IPv6) when the host has an IPv6 relay address.
    public var ipv6Relays: Bool = true
    /// Local address IPv6 relay sockets bind to (RFC 6156).
    public var relayBindAddress6: String = "::"
    /// The relay bind address for relays of `family`.
    func relayBindAddress(_ family: AddressFamily) -> String { family == .ipv6 ? relayBindAddress6 : relayBindAddress }
    /// IPv6 address told to clients for IPv6 relays; nil = the IPv6 relay or listen address when
    /// specific, else the first global IPv6 interface address; no such address = IPv6 relays refused (440).
    public var externalAddress6: IPAddress?
    /// Listen addresses that may be skipped, with a log line, when the host cannot bind them (the
    /// default `::` on a host without IPv6).
    public var optionalListenAddresses: Set<String> = []
    /// STUN/TURN over TCP on `port` (RFC 8656 §3.1).
    public var tcp: Bool = true
    /// STUN/TURN over TLS (TLS 1.2/1.3) on `tlsPort`; off while `tls` is nil.
    public var tlsPort: Int = 5349
    public var tls: ReloadableTLSContext?
    /// A TCP/TLS client whose message stays incomplete this long is disconnected.
    public var streamIncompleteTimeout: TimeAmount = .seconds(10)
    /// A TCP/TLS connection without an allocation that goes this long without a complete message (from
    /// its accept, so a silent client or a stalled TLS handshake too) is disconnected. `.zero` = never.
    public var streamIdleTimeout: TimeAmount = .seconds(30)
    /// UDP listener sockets per address (SO_REUSEPORT), each served by its own event loop.
    public var threads: Int = TurnConfiguration.defaultThreads

    /// Half the cores, at least one. Most of a UDP relay's CPU time is the kernel's send/receive path,
    /// which runs in the sending thread's context; on 2 cores one event loop relayed at lower CPU per
    /// packet and lower loss than two (BENCHMARKS.md), and more loops only add wakeups.
    public static var defaultThreads: Int { max(1, System.coreCount / 2) }

    public init() {}
}
