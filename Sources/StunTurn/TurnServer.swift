import Auth
import ServerTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The addresses the STUN/TURN listeners are bound to (with port 0, the ports picked).
public struct TurnListeners: Sendable {
    public var udp: [SocketAddress] = []
    public var tcp: [SocketAddress] = []
    public var tls: [SocketAddress] = []
}

/// The STUN/TURN half as a ServiceLifecycle service: one UDP socket per listen address and event loop
/// (SO_REUSEPORT spreads clients over loops by 4-tuple hash), each loop with its own engine.
public final class TurnServer: Service, Sendable {
    let shared: TurnShared
    private let group: EventLoopGroup
    /// One engine per event loop, each usable on its loop only.
    let engines: [NIOLoopBoundBox<TurnEngine>]
    private struct Sockets {
        var listeners: [Channel] = []
        /// The TCP/TLS listening sockets (closed first when draining).
        var streamServers: [Channel] = []
        var bound = TurnListeners()
        var onListening: (@Sendable (TurnListeners) -> Void)?
    }
    private let sockets = Mutex(Sockets())

    public init(configuration: TurnConfiguration, credentials: CredentialStore, group: EventLoopGroup, logger: Logger) {
        let relayedIP = TurnServer.relayedIP(for: configuration)
        let shared = TurnShared(configuration: configuration, credentials: credentials, relayedIP: relayedIP,
                                relayedIP6: TurnServer.relayedIP6(for: configuration), logger: logger)
        self.shared = shared
        self.group = group
        var loops: [EventLoop] = []
        for _ in 0..<max(1, configuration.threads) {
            let l = group.next()
            if !loops.contains(where: { $0 === l }) { loops.append(l) }
        }
        // Each engine is handed to its loop: the box checks that it is only used there.
        engines = loops.map { loop in
            NIOLoopBoundBox.makeBoxSendingValue(TurnEngine(eventLoop: loop, shared: shared), as: TurnEngine.self, eventLoop: loop)
        }
    }

    /// Called once every listener is bound, with the bound addresses (call before `run`).
    public func whenListening(_ body: @escaping @Sendable (TurnListeners) -> Void) {
        sockets.withLock { $0.onListening = body }
    }

    public var configuration: TurnConfiguration { shared.configuration }
    public var stats: TurnStats { shared.stats }
    /// The live limits (replaced on reload).
    public var limits: TurnLimits { shared.limits.current }
    /// The address in XOR-RELAYED-ADDRESS of IPv4 relays, and of IPv6 relays when this host offers them.
    public var relayedIP: IPAddress { shared.relayedIP }
    public var relayedIP6: IPAddress? { shared.relayedIP6 }
    /// True once a graceful shutdown has begun.
    public var isDraining: Bool { shared.isDraining }

    /// Applies new limits (configuration reload): quotas at once, the rest within a second.
    public func updateLimits(_ new: TurnLimits) { shared.updateLimits(new) }

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
    public func start() async throws -> TurnListeners {
        let c = shared.configuration
        for e in engines { e.eventLoop.execute { e.value.start() } }
        var bound = TurnListeners()
        for address in c.listenAddresses {
            // With port 0 the UDP port is picked first and TCP/TLS must then get the same number; if a TCP
            // socket already has it, everything bound for this address is closed and another port picked.
            var attemptsLeft = c.port == 0 ? 8 : 1
            while true {
                do {
                    let more = try await bindListeners(address: address)
                    bound.udp += more.udp
                    bound.tcp += more.tcp
                    bound.tls += more.tls
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
        let onListening = sockets.withLock { s in
            s.bound = bound
            return s.onListening
        }
        onListening?(bound)
        return bound
    }

    /// The UDP sockets (one per engine), and the TCP and TLS listeners when configured, of one listen
    /// address; the bound addresses, or none for an optional address this host lacks. On an error, what
    /// was bound for the address is closed again.
    private func bindListeners(address: String) async throws -> TurnListeners {
        let c = shared.configuration
        // SO_REUSEPORT would let us share a port another process already holds; probe with a plain
        // bind first so "address in use" is an error here as it is for any server.
        let probe: Channel
        do {
            probe = try await Self.datagram(group, v6: address.contains(":")).bind(host: address, port: c.port).get()
        } catch where c.optionalListenAddresses.contains(address) {
            shared.logger.warning("not listening on \(address): \(error) (this host has no such address family?)")
            return TurnListeners()
        }
        let port = probe.localAddress?.port ?? c.port
        try await probe.close()
        var opened: [Channel] = [], streams: [Channel] = []
        do {
            var bound = TurnListeners()
            for engine in engines {
                // Made here (IPv6-only for IPv6) and adopted by NIO: the writer sends on its descriptor.
                let fd = try UDPSocket.bound(host: address, port: port, reusePort: true)
                let channel = try await DatagramBootstrap(group: engine.eventLoop)
                    .turnListenerReadOptions()
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(UDPListenerHandler(engine: engine.value, fd: fd))
                        }
                    }
                    .withBoundSocket(fd).get()
                opened.append(channel)
                if engine === engines.first, let local = channel.localAddress { bound.udp.append(local) }
            }
            shared.logger.info("STUN/TURN listening", metadata: [
                "transport": "udp", "address": "\(address)", "port": "\(port)", "sockets": "\(engines.count)",
            ])
            if c.tcp {
                let (channels, tcpPort) = try await bindStream(address: address, port: port, tls: nil)
                streams += channels
                bound.tcp.append(try SocketAddress(ipAddress: address, port: tcpPort))
                shared.logger.info("STUN/TURN listening", metadata: ["transport": "tcp", "address": "\(address)", "port": "\(tcpPort)"])
            }
            if let tls = c.tls {
                let (channels, tlsPort) = try await bindStream(address: address, port: c.tlsPort, tls: tls)
                streams += channels
                bound.tls.append(try SocketAddress(ipAddress: address, port: tlsPort))
                shared.logger.info("STUN/TURN listening", metadata: ["transport": "tls", "address": "\(address)", "port": "\(tlsPort)"])
            }
            sockets.withLock { s in
                s.listeners += opened
                s.streamServers += streams
            }
            return bound
        } catch {
            for ch in opened + streams { try? await ch.close() }
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

    static let reusePort = ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(SOL_SOCKET)), name: .init(rawValue: CInt(SO_REUSEPORT)))

    static func server(_ group: EventLoopGroup, _ childGroup: EventLoopGroup, v6: Bool) -> ServerBootstrap {
        let b = ServerBootstrap(group: group, childGroup: childGroup)
        return v6 ? b.serverChannelOption(v6Only, value: 1) : b
    }

    /// One TCP (or TLS) listener per engine on `address:port` (SO_REUSEPORT spreads connections over the
    /// engines' loops; a plain-bind probe first, as for UDP). Returns the bound port.
    private func bindStream(address: String, port: Int, tls: ReloadableTLSContext?) async throws -> ([Channel], Int) {
        let v6 = address.contains(":")
        let probe = try await Self.server(group, group, v6: v6).bind(host: address, port: port).get()
        let bound = probe.localAddress?.port ?? port
        try await probe.close()
        let timeout = shared.configuration.streamIncompleteTimeout
        let idleTimeout = shared.configuration.streamIdleTimeout
        let logger = shared.logger
        let shared = self.shared
        var channels: [Channel] = []
        do {
            for engine in engines {
                let transport: FiveTuple.Transport = tls == nil ? .tcp : .tls
                let channel = try await Self.server(engine.eventLoop, engine.eventLoop, v6: v6)
                    .serverChannelOption(Self.reusePort, value: 1)
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
                            try ops.addHandler(StreamConnectionHandler(engine: engine.value, transport: transport, idleTimeout: idleTimeout))
                        }
                    }
                    .bind(host: address, port: bound).get()
                channels.append(channel)
            }
        } catch {
            for ch in channels { try? await ch.close() }
            throw error
        }
        return (channels, bound)
    }

    /// Releases every allocation authenticated with the credentials of signaling session `session`, on
    /// every event loop (used when the session ends and its credentials are revoked). Returns how many.
    @discardableResult
    public func releaseAllocations(session: String, reason: String = "credential revoked") async -> Int {
        var released = 0
        for e in engines {
            released += (try? await e.eventLoop.submit {
                let engine = e.value
                let (count, actions) = engine.core.release(session: session, reason: reason)
                engine.perform(actions)
                return count
            }.get()) ?? 0
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
            out += (try? await e.eventLoop.submit { e.value.core.allocationInfos() }.get()) ?? []
        }
        return out
    }

    /// Graceful shutdown: TCP/TLS stop accepting, new allocations are refused (508), and existing ones
    /// keep relaying until they are all gone or `drainGracePeriod` has passed.
    public func drain() async {
        shared.draining.set()
        await closeStreamServers()
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

    private func closeStreamServers() async {
        let servers = sockets.withLock { s in
            defer { s.streamServers.removeAll() }
            return s.streamServers
        }
        for ch in servers { try? await ch.close() }
    }

    public func stop() async {
        await closeStreamServers()
        let listeners = sockets.withLock { s in
            defer { s.listeners.removeAll() }
            return s.listeners
        }
        for ch in listeners { try? await ch.close() }
        for e in engines {
            try? await e.eventLoop.submit { e.value.stop() }.get()
        }
        shared.portPool.cancelAllReservations()
    }

    public func run() async throws {
        if sockets.withLock({ $0.listeners.isEmpty }) { try await start() }
        try? await gracefulShutdown()
        await drain()
        await stop()
    }
}
