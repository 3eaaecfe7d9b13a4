import Auth
import Logging
import NIOCore
import Synchronization

/// What every event loop's engine shares: configuration and the few cross-loop structures, all
/// Sendable and touched only when allocations come and go.
public struct TurnShared: Sendable {
    public let configuration: TurnConfiguration
    public let credentials: CredentialStore
    public let portPool: RelayPortPool
    public let quota: AllocationQuota
    public let stats: TurnStats
    public let relayedIP: IPAddress
    /// The address of IPv6 relays; nil when this host offers none (REQUESTED-ADDRESS-FAMILY IPv6 → 440).
    public let relayedIP6: IPAddress?
    /// RFC 6062 peer connections by CONNECTION-ID, across engines.
    let tcpConnections = TCPConnectionRegistry()
    /// Quotas, bandwidth cap, request rate, peer policy: replaced on reload, re-read by engines each second.
    public let limits: TurnLimitsBox
    let unauthenticatedRequests = SourceRateLimiter()
    /// Open TCP/TLS connections per source (turn.max_connections_per_source).
    let streamSources = StreamSourceCounter()
    /// Set when a graceful shutdown begins: new allocations are refused, existing ones keep relaying.
    let draining = DrainFlag()
    public let logger: Logger

    public init(configuration: TurnConfiguration, credentials: CredentialStore, relayedIP: IPAddress,
                relayedIP6: IPAddress? = nil, stats: TurnStats = TurnStats(), logger: Logger) {
        self.configuration = configuration
        self.credentials = credentials
        self.portPool = RelayPortPool(range: configuration.relayPorts)
        self.quota = AllocationQuota(.init(perUser: configuration.maxAllocationsPerUser, total: configuration.maxAllocations))
        self.stats = stats
        self.relayedIP = relayedIP
        self.relayedIP6 = relayedIP6
        self.logger = logger
        self.limits = TurnLimitsBox(configuration.limits)
        limits.set(withHostAddresses(configuration.limits))
    }

    /// Applies new limits (configuration reload): quotas at once, the rest within a second. The host's
    /// own addresses are read again (an interface may have come or gone).
    public func updateLimits(_ new: TurnLimits) {
        limits.set(withHostAddresses(new))
        quota.update(.init(perUser: new.maxAllocationsPerUser, total: new.maxAllocations))
    }

    /// `limits` with the peer policy knowing this host's addresses and relay ports.
    private func withHostAddresses(_ limits: TurnLimits) -> TurnLimits {
        var l = limits
        l.peerPolicy.hostAddresses = HostAddresses.discover(configuration, relayedIP: relayedIP, relayedIP6: relayedIP6)
        l.peerPolicy.relayPorts = configuration.relayPorts
        return l
    }

    public var isDraining: Bool { draining.isSet }
}

/// One allocation as the admin API and dashboard show it.
public struct AllocationInfo: Sendable, Codable {
    public let username: String
    public let client: String
    public let transport: String
    public let relayed: String
    public let permissions: Int
    public let channels: Int
    public let bytesToPeer: Int
    public let bytesToClient: Int
    public let expiresIn: Int
}

final class DrainFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}
