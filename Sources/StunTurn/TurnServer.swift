import Auth
import ServerTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// The STUN/TURN half as a ServiceLifecycle service: one UDP socket per listen address and event loop
/// (SO_REUSEPORT spreads clients over loops by 4-tuple hash), each loop with its own engine.
public final class TurnServer: Service, @unchecked Sendable {
    public let shared: TurnShared
    private let group: EventLoopGroup
    private(set) var engines: [TurnEngine] = []
    private var channels: [Channel] = []
    /// The TCP/TLS listening sockets (closed first when draining).
    private var streamServers: [Channel] = []
    /// Called once every listener is bound, with the bound addresses (set before `run`).
    public var onListening: (@Sendable ([SocketAddress]) -> Void)?

    public init(configuration: TurnConfiguration, credentials: CredentialStore, group: EventLoopGroup, logger: Logger) {
        let relayedIP = TurnServer.relayedIP(for: configuration)
        shared = TurnShared(configuration: configuration, credentials: credentials, relayedIP: relayedIP,
                            relayedIP6: TurnServer.relayedIP6(for: configuration), logger: logger)
        self.group = group
    }

    /// The IP put in XOR-RELAYED-ADDRESS: the external address if configured, else the relay bind
    /// address or listen address when specific, else the first non-loopback IPv4 interface address.
    static func relayedIP(for c: TurnConfiguration) -> IPAddress {
        if let e = c.externalAddress { return e }
        if let r = IPAddress(c.relayBindAddress), r != IPAddress(ipv4: 0) { return r }
        for l in c.listenAddresses {
            if let ip = IPAddress(l), !ip.isIPv6, ip != IPAddress(ipv4: 0) { return ip }
        }
        if let devices = try? System.enumerateDevices() {
            for d in devices {
                if let a = d.address.flatMap(TransportAddress.init), !a.ip.isIPv6, (a.ip.ipv4! >> 24) != 127 { return a.ip }
            }
        }
        return IPAddress(ipv4: 0x7F00_0001)
    }

    /// The IP put in XOR-RELAYED-ADDRESS for IPv6 relays (RFC 6156): the external IPv6 address if
    /// configured, else the IPv6 relay bind or listen address when specific, else the first global
    /// (not loopback, not link-local) IPv6 interface address; nil when the host has none.
    static func relayedIP6(for c: TurnConfiguration) -> IPAddress? {
        guard c.ipv6Relays else { return nil }
        if let e = c.externalAddress6 { return e }
        let unspecified = IPAddress("::")!
        if let r = IPAddress(c.relayBindAddress6), r.isIPv6, r != unspecified { return r }
        for l in c.listenAddresses {
            if let ip = IPAddress(l), ip.isIPv6, ip != unspecified { return ip }
        }
        if let devices = try? System.enumerateDevices() {
            for d in devices {
                guard let a = d.address.flatMap(TransportAddress.init), a.ip.isIPv6 else { continue }
                let b = a.ip.bytes
                let linkLocal = b[0] == 0xFE && (b[1] & 0xC0) == 0x80
                if !linkLocal, a.ip != IPAddress("::1")! { return a.ip }
            }
        }
        return nil
    }

    /// Binds every listener; returns the bound addresses (useful with port 0).
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        let c = shared.configuration
        let loops = (0..<max(1, c.threads)).map { _ in group.next() }
        var unique: [EventLoop] = []
        for l in loops where !unique.contains(where: { $0 === l }) { unique.append(l) }
        engines = unique.map { TurnEngine(eventLoop: $0, shared: shared) }
        for e in engines { e.eventLoop.execute { e.start() } }
        var bound: [SocketAddress] = []
        for address in c.listenAddresses {
            // With port 0 the UDP port is picked first and TCP/TLS must then get the same number; if a TCP
            // socket already has it, everything bound for this address is closed and another port picked.
            var attemptsLeft = c.port == 0 ? 8 : 1
            while true {
                do {
                    bound += try await bindListeners(address: address)
                    break
                } catch let error as IOError where error.errnoCode == EADDRINUSE && attemptsLeft > 1 {
                    attemptsLeft -= 1
                }
            }
        }
        if c.tls == nil {
            shared.logger.info("TURN over TLS is off: set turn.tls_cert and turn.tls_key (PEM files) to serve it on port \(c.tlsPort)")
        }
        shared.logger.info("TURN relay", metadata: [
            "relayed-address": "\(shared.relayedIP)",
            "relayed-address6": "\(shared.relayedIP6.map { "\($0)" } ?? "none (IPv6 relays refused with 440)")",
            "ports": "\(c.relayPorts.lowerBound)-\(c.relayPorts.upperBound)",
        ])
        onListening?(bound)
        return bound
    }

    /// The UDP sockets (one per engine), and the TCP and TLS listeners when configured, of one listen
    /// address; the bound addresses (UDP, TCP, TLS), or none for an optional address this host lacks. On
    /// an error, what was bound for the address is closed again.
    private func bindListeners(address: String) async throws -> [SocketAddress] {
        let c = shared.configuration
        // SO_REUSEPORT would let us share a port another process already holds; probe with a plain
        // bind first so "address in use" is an error here as it is for any server.
        let probe: Channel
        do {
            probe = try await Self.datagram(group, v6: address.contains(":")).bind(host: address, port: c.port).get()
        } catch where c.optionalListenAddresses.contains(address) {
            shared.logger.warning("not listening on \(address): \(error) (this host has no such address family?)")
            return []
        }
        let port = probe.localAddress?.port ?? c.port
        try await probe.close()
        let channelsBefore = channels.count, streamServersBefore = streamServers.count
        do {
            var bound: [SocketAddress] = []
            for engine in engines {
                // Made here (IPv6-only for IPv6) and adopted by NIO: the relay path writes to its descriptor.
                let fd = try UDPSocket.bound(host: address, port: port, reusePort: true)
                let channel = try await DatagramBootstrap(group: engine.eventLoop)
                    .turnListenerReadOptions()
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(UDPListenerHandler(engine: engine, fd: fd))
                        }
                    }
                    .withBoundSocket(fd).get()
                channels.append(channel)
                if engine === engines.first, let local = channel.localAddress { bound.append(local) }
            }
            var streams: [(transport: String, port: Int)] = []
            if c.tcp { streams.append(("tcp", try await bindStream(address: address, port: port, tls: nil))) }
            if let tls = c.tls { streams.append(("tls", try await bindStream(address: address, port: c.tlsPort, tls: tls))) }
            shared.logger.info("STUN/TURN listening", metadata: [
                "transport": "udp", "address": "\(address)", "port": "\(port)", "sockets": "\(engines.count)",
            ])
            for s in streams {
                shared.logger.info("STUN/TURN listening", metadata: ["transport": "\(s.transport)", "address": "\(address)", "port": "\(s.port)"])
                bound.append(try SocketAddress(ipAddress: address, port: s.port))
            }
            return bound
        } catch {
            for ch in channels[channelsBefore...] { try? await ch.close() }
            channels.removeSubrange(channelsBefore...)
            for ch in streamServers[streamServersBefore...] { try? await ch.close() }
            streamServers.removeSubrange(streamServersBefore...)
            throw error
        }
    }

    /// IPv6 listeners take IPv6 only (IPV6_V6ONLY), so `0.0.0.0` and `::` can both be bound on one
    /// port. The option exists on IPv6 sockets only.
    static let v6Only = ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IPV6)), name: .init(rawValue: CInt(IPV6_V6ONLY)))

    static func datagram(_ group: EventLoopGroup, v6: Bool) -> DatagramBootstrap {
        let b = DatagramBootstrap(group: group)
        return v6 ? b.channelOption(v6Only, value: 1) : b
    }

    static func server(_ group: EventLoopGroup, _ childGroup: EventLoopGroup, v6: Bool) -> ServerBootstrap {
        let b = ServerBootstrap(group: group, childGroup: childGroup)
        return v6 ? b.serverChannelOption(v6Only, value: 1) : b
    }

    /// One TCP (or TLS) listener per engine on `address:port` (SO_REUSEPORT spreads connections over the
    /// engines' loops; a plain-bind probe first, as for UDP). Returns the bound port.
    private func bindStream(address: String, port: Int, tls: ReloadableTLSContext?) async throws -> Int {
        let v6 = address.contains(":")
        let probe = try await Self.server(group, group, v6: v6).bind(host: address, port: port).get()
        let bound = probe.localAddress?.port ?? port
        try await probe.close()
        let timeout = shared.configuration.streamIncompleteTimeout
        let idleTimeout = shared.configuration.streamIdleTimeout
        let logger = shared.logger
        let shared = self.shared
        for engine in engines {
            let transport: FiveTuple.Transport = tls == nil ? .tcp : .tls
            let channel = try await Self.server(engine.eventLoop, engine.eventLoop, v6: v6)
                .serverChannelOption(ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(SOL_SOCKET)), name: .init(rawValue: CInt(SO_REUSEPORT))), value: 1)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let ops = channel.pipeline.syncOperations
                        try ops.addHandler(StreamSourceLimitHandler(shared: shared))
                        if let tls { try ops.addHandler(NIOSSLServerHandler(context: tls.current)) }
                        try ops.addHandler(StunStreamFramer(incompleteTimeout: timeout) { error in
                            logger.debug("stream framing error; closing", metadata: ["error": "\(error)"])
                        })
                        try ops.addHandler(StreamConnectionHandler(engine: engine, transport: transport, idleTimeout: idleTimeout))
                    }
                }
                .bind(host: address, port: bound).get()
            streamServers.append(channel)
        }
        return bound
    }

    /// Releases every allocation authenticated with the credentials of signaling session `session`, on
    /// every event loop (used when the session ends and its credentials are revoked). Returns how many.
    @discardableResult
    public func releaseAllocations(session: String, reason: String = "credential revoked") async -> Int {
        var released = 0
        for e in engines {
            released += (try? await e.eventLoop.submit { e.release(session: session, reason: reason) }.get()) ?? 0
        }
        return released
    }

    /// One lifecycle for a peer: when a signaling session's credentials are revoked (the peer left or was
    /// kicked, here or on another instance of the cluster), the allocations made with them are released at once.
    public func releaseAllocationsWhenRevoked(_ sessions: SessionCredentials) {
        sessions.onRevoke { [self] session, _ in
            Task { await self.releaseAllocations(session: session, reason: "signaling session ended") }
        }
    }

    /// The allocations of every event loop, for the dashboard and the admin API.
    public func allocations() async -> [AllocationInfo] {
        var out: [AllocationInfo] = []
        for e in engines {
            out += (try? await e.eventLoop.submit { e.allocationInfos() }.get()) ?? []
        }
        return out
    }

    /// Graceful shutdown: TCP/TLS stop accepting, new allocations are refused (508), and existing ones
    /// keep relaying until they are all gone or `drainGracePeriod` has passed.
    public func drain() async {
        shared.draining.set()
        for ch in streamServers { try? await ch.close() }
        streamServers.removeAll()
        let grace = shared.configuration.drainGracePeriod
        let active = shared.stats.allocationsActive.value
        guard active > 0, grace > .zero else { return }
        shared.logger.info("draining: \(active) allocation(s) keep relaying for up to \(grace.nanoseconds / 1_000_000_000) s")
        let deadline = NIODeadline.now() + grace
        while shared.stats.allocationsActive.value > 0, NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        shared.logger.info("drained", metadata: ["allocations-left": "\(shared.stats.allocationsActive.value)"])
    }

    public func stop() async {
        for ch in streamServers { try? await ch.close() }
        streamServers.removeAll()
        for ch in channels { try? await ch.close() }
        channels.removeAll()
        for e in engines {
            try? await e.eventLoop.submit { e.stop() }.get()
        }
        shared.portPool.cancelAllReservations()
    }

    public func run() async throws {
        if channels.isEmpty { try await start() }
        try? await gracefulShutdown()
        await drain()
        await stop()
    }
}
