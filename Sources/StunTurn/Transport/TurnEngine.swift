import Logging
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// The transport shell of one event loop around its `TurnCore`: its sockets hand the core what they
/// read, and the shell carries out what the core answers (`TurnAction`): sending, binding relay sockets,
/// connecting to peers, joining and closing connections; asynchronous results go back to the core as
/// events. UDP leaves through the loop's `DatagramWriter` (the core's sink); TCP/TLS connections are
/// written through their `ChannelStreamLink`; both are flushed once at the end of the event-loop tick.
///
/// Confined to `eventLoop`: the listener and relay sockets that call into it are bound to it, and so are
/// its timers and future callbacks. The loop-bound box states it in the type; the engine itself is
/// shared with handlers and tasks only through `NIOLoopBound` values or on its loop.
final class TurnEngine {
    let eventLoop: EventLoop
    let shared: TurnShared
    let core: TurnCore
    /// Every UDP datagram of this loop's sockets, sent with sendmmsg at the end of the tick.
    let writer: DatagramWriter
    /// The reads past NIO's first of each wake-up, for every UDP socket of this loop.
    let drain: DatagramDrain
    private var sweeper: Scheduled<Void>?
    /// Streams written to in this tick, flushed together at its end.
    private var dirtyStreams: [Channel] = []
    private var tickFlushScheduled = false
    var stats: TurnStats { core.stats }
    var logger: Logger { shared.logger }
    var configuration: TurnConfiguration { shared.configuration }

    init(eventLoop: EventLoop, shared: TurnShared) {
        self.eventLoop = eventLoop
        self.shared = shared
        var scheduleFlush: () -> Void = {}
        writer = DatagramWriter(dropped: { [stats = shared.stats] in stats.sendFailed.add($0) }, becameNonEmpty: { scheduleFlush() })
        drain = DatagramDrain(truncated: { [stats = shared.stats] in stats.malformedDropped.add($0) })
        core = TurnCore(shared: shared, sink: writer, gso: shared.configuration.udpGSO && System.supportsUDPSegmentationOffload)
        // The writer asks for the tick's flush through the engine; a strong capture, released by stop().
        scheduleFlush = { [unowned self] in scheduleTickFlush() }
    }

    func start() { scheduleSweep() }

    /// Once a second: the core's expiries and limits, and the pool's unredeemed reservations.
    private func scheduleSweep() {
        // A strong capture: a weak one would give the engine a reference-count side table, slowing every
        // retain and release of it on the relay path. stop() cancels the task, which lets go of the engine.
        sweeper = eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
            shared.portPool.expireReservations()  // closes the sockets of reservations nobody redeemed
            perform(core.sweep())
            scheduleSweep()
        }
    }

    func stop() {
        sweeper?.cancel()
        perform(core.endAll(reason: "server stopping"))
        writer.flush()
    }

    // MARK: From the sockets

    @inline(__always)
    func receive(_ buffer: ByteBuffer, fiveTuple: FiveTuple, path: @autoclosure () -> ClientPath) {
        let actions = core.receive(buffer, fiveTuple: fiveTuple, path: path())
        if !actions.isEmpty { perform(actions) }
    }

    func streamClosed(_ fiveTuple: FiveTuple) { perform(core.streamClosed(fiveTuple)) }

    // MARK: Carrying actions out

    func perform(_ actions: [TurnAction]) {
        for action in actions {
            switch action {
            case .send(let bytes, let path):
                send(bytes, to: path)
            case .sendLater(let bytes, let path, let delay):
                eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in send(bytes, to: path) }
            case .bindRelay(let request):
                bindRelay(request)
            case .connectPeer(let connection, let socket, let peer):
                connect(connection, from: socket, to: peer)
            case .joinDataConnection(let link, let connection):
                join(link, to: connection)
            case .close(let socket):
                writer.flush()  // what was relayed before the close still goes out
                socket.close()
            case .closePeerConnection(let connection):
                connection.closeBoth()
            case .lookUpCredentials(let pending):
                lookUp(pending)
            }
        }
    }

    /// Asks the lookup chain off the loop; the request comes back to the core on the loop with the answer.
    private func lookUp(_ pending: PendingLookup) {
        let credentials = shared.credentials, username = pending.username, loop = eventLoop
        let waiting = NIOLoopBound((engine: self, pending: pending), eventLoop: loop)
        Task {
            let resolution = await credentials.resolveLookingUp(username)
            loop.execute {
                let (engine, pending) = waiting.value
                engine.perform(engine.core.credentialsResolved(pending, resolution))
            }
        }
    }

    private func send(_ bytes: ByteBuffer, to path: ClientPath) {
        path.write(bytes, sink: writer)
    }

    /// A TCP/TLS connection written to: flushed at the end of this tick.
    func streamWritten(_ channel: Channel) {
        if !dirtyStreams.contains(where: { $0 === channel }) { dirtyStreams.append(channel) }
        scheduleTickFlush()
    }

    /// At the end of this event-loop tick: send what the writer holds, flush the streams written to.
    @inline(__always)
    func scheduleTickFlush() {
        guard !tickFlushScheduled else { return }
        tickFlushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            tickFlushScheduled = false
            writer.flush()
            for c in dirtyStreams { c.flush() }
            dirtyStreams.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Relay sockets

    /// Makes the socket of a `bindRelay` action and reports it to the core: a UDP socket made here
    /// (`UDPSocket`, IPv6-only for IPv6, or the descriptor that has held a reserved port) and adopted
    /// by NIO so that the writer can send on its descriptor; or a listening TCP socket (RFC 6062).
    private func bindRelay(_ request: RelayBindRequest) {
        let host = configuration.relayBindAddress(request.family)
        if let token = request.holdReservation, !ReservedPortSocket.hold(token, in: shared.portPool, host: host) {
            perform(core.relayBindFailed(request.allocation, slot: request.slot, port: request.port, failure: .reservedPortTaken))
            return
        }
        let acceptor = PeerAcceptor()
        let bound: EventLoopFuture<(Channel, CInt)>
        if request.tcp {
            bound = bindTCPRelay(host: host, request: request, acceptor: acceptor).map { ($0, -1) }
        } else {
            bound = bindUDPRelay(host: host, request: request)
        }
        bound.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let (channel, fd)):
                let socket = SocketHandle.adopting(channel, fd: fd, port: request.port)
                if request.tcp {
                    acceptor.socket = socket
                } else {
                    try? channel.pipeline.syncOperations.addHandler(RelaySocketHandler(engine: self, socket: socket))
                }
                perform(core.relayBound(request.allocation, slot: request.slot, socket: socket))
            case .failure(let error):
                perform(core.relayBindFailed(request.allocation, slot: request.slot, port: request.port, failure: .portTaken(error)))
            }
        }
    }

    private func bindUDPRelay(host: String, request: RelayBindRequest) -> EventLoopFuture<(Channel, CInt)> {
        let fd: CInt
        do {
            fd = try request.heldSocket ?? UDPSocket.bound(host: host, port: Int(request.port))
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return DatagramBootstrap(group: eventLoop)
            .turnRelayReadOptions()
            .withBoundSocket(fd)
            .hop(to: eventLoop)
            .flatMapThrowing { channel in
                if request.dontFragment {
                    // RFC 8656 §7.2 step 3 / §14: DONT-FRAGMENT → set DF on relayed datagrams.
                    let ipv6 = request.family == .ipv6
                    let option = ChannelOptions.Types.SocketOption(
                        level: .init(rawValue: CInt(ipv6 ? IPPROTO_IPV6 : IPPROTO_IP)),
                        name: .init(rawValue: CInt(ipv6 ? IPV6_MTU_DISCOVER : IP_MTU_DISCOVER)))
                    _ = channel.setOption(option, value: Int(IP_PMTUDISC_DO))
                }
                return (channel, fd)
            }
    }

    /// RFC 6062 §5.1: the listening relay socket of a TCP allocation (SO_REUSEADDR and SO_REUSEPORT, so
    /// that Connect can open connections from the same address).
    private func bindTCPRelay(host: String, request: RelayBindRequest, acceptor: PeerAcceptor) -> EventLoopFuture<Channel> {
        let accepting = NIOLoopBound((engine: self, acceptor: acceptor), eventLoop: eventLoop)
        return TurnServer.server(eventLoop, eventLoop, v6: request.family == .ipv6)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(TurnServer.reusePort, value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (engine, acceptor) = accepting.value
                    try channel.pipeline.syncOperations.addHandler(PeerTCPHandler(engine: engine, acceptor: acceptor))
                }
            }
            .bind(host: host, port: Int(request.port))
            .hop(to: eventLoop)
    }

    // MARK: RFC 6062 connections

    /// A peer connected to a TCP allocation's listening socket: the core admits it or it is closed.
    func peerAccepted(_ channel: Channel, on socket: SocketHandle) -> PeerTCPConnection? {
        guard let peer = channel.remoteAddress.flatMap(TransportAddress.init) else { return nil }
        let (connection, actions) = core.peerAccepted(on: socket, from: peer)
        if let connection {
            connection.peerChannel = channel
            connection.startBindTimer { channel.close(promise: nil) }
        }
        perform(actions)
        return connection
    }

    func peerClosed(_ connection: PeerTCPConnection) {
        core.peerClosed(connection)
        connection.closeBoth()
    }

    /// Connect (RFC 6062 §5.2): a connection to the peer from the relayed transport address.
    private func connect(_ connection: PeerTCPConnection, from socket: SocketHandle, to peer: TransportAddress) {
        let opened = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(TurnServer.reusePort, value: 1)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PeerTCPHandler(engine: opened.value, connection: connection))
                }
            }
            .bind(to: socket.localAddress.socketAddress())
            .connect(to: peer.socketAddress())
            .hop(to: eventLoop)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    connection.peerChannel = channel
                    channel.eventLoop.execute { connection.startBindTimer { channel.close(promise: nil) } }
                    perform(core.peerConnected(connection))
                case .failure(let error):
                    perform(core.peerConnectFailed(connection, error: error))
                }
            }
    }

    /// ConnectionBind (RFC 6062 §5.4): once this read is handled, the client's connection stops
    /// carrying STUN and becomes the data connection of `connection`.
    private func join(_ link: StreamLink, to connection: PeerTCPConnection) {
        (link as? ChannelStreamLink)?.becomeDataConnection(of: connection, stats: stats)
    }
}

extension SocketHandle {
    /// The handle of a NIO channel's socket (descriptor `fd`, -1 if not written by descriptor): closed
    /// through the channel, and marked closed when the channel closes, whoever closes it.
    static func adopting(_ channel: Channel, fd: CInt, port: UInt16) -> SocketHandle {
        let local = channel.localAddress.flatMap(TransportAddress.init) ?? TransportAddress(ip: IPAddress(ipv4: 0), port: port)
        let handle = SocketHandle(fd: fd, localAddress: local) { channel.close(promise: nil) }
        channel.closeFuture.assumeIsolated().whenComplete { _ in handle.isOpen = false }
        return handle
    }
}
