// nio-udp-floor: what a UDP relay whose data path runs through SwiftNIO channels costs at the very least.
//
// A bare forwarder on one NIO event loop, shaped like webrtc-server's TURN relay path: one listening
// socket facing the clients and one upstream socket per client, made as StunTurn makes them
// (`UDPSocket`, adopted by NIO) and read with NIO's vector reads (32 datagrams per recvmmsg on the
// listener, 8 on an upstream socket, as our relay path read until it drained its sockets itself),
// each read batch flushed once. It forwards every datagram unchanged: no parsing, no authentication, no
// permission or channel lookup, no counters, only a table from client port to upstream socket. Put in
// front of coturn (clients → floor → coturn's listener), it carries per round trip what a TURN server's
// relay carries (two datagrams read, two written), so its CPU per relayed packet, measured in the same
// run as coturn's own, bounds from below any relay built on NIO channels.
// With --raw-writes it writes as our relay path does, with StunTurn's `DatagramWriter` (`sendmmsg` on
// the sockets' descriptors) instead of through the channels; with --drain it also reads as our relay
// path does (NIO reads the first datagram of each wake-up with StunTurn's read options, the handler
// the rest with StunTurn's `DatagramDrain`); with --raw it forwards on plain sockets and epoll instead
// of NIO (RawForwarder.swift). `bench/turn_bench.py --floor` runs all four; the figures are in
// BENCHMARKS.md.
import ArgumentParser
import NIOCore
import NIOPosix
import StunTurn

@main
struct UDPFloor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nio-udp-floor",
        abstract: "Bare SwiftNIO UDP forwarder on 127.0.0.1, the floor for a relay on NIO channels.")

    @Option(help: "UDP port to listen on, on 127.0.0.1.") var port: Int
    @Option(help: "UDP port to forward to, on 127.0.0.1 (e.g. coturn's listener).") var upstreamPort: Int
    @Flag(help: "Forward on plain sockets, epoll and recvmmsg/sendmmsg instead of NIO channels.") var raw = false
    @Flag(help: "Read with NIO channels, write with StunTurn's DatagramWriter (sendmmsg on the same sockets).") var rawWrites = false
    @Flag(help: "Read and write as webrtc-server's relay path: NIO reads each wake-up's first datagram, StunTurn's DatagramDrain the rest; writes as --raw-writes.") var drain = false

    func validate() throws {
        guard (1...65535).contains(port), (1...65535).contains(upstreamPort) else {
            throw ValidationError("--port and --upstream-port must be between 1 and 65535")
        }
    }

    func run() throws {
        if raw { try RawForwarder(port: port, upstreamPort: upstreamPort).run() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try SocketAddress(ipAddress: "127.0.0.1", port: upstreamPort)
        let writes: Writes = rawWrites || drain ? .writer(DatagramWriter(dropped: { _ in })) : .channels
        let reads = drain ? Reads.drain(DatagramDrain(truncated: { _ in })) : .channels
        let fd = try UDPSocket.bound(host: "127.0.0.1", port: port)
        let listener = try reads.options(DatagramBootstrap(group: group), listener: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ClientSide(upstream: upstream, listenerFD: fd, writes: writes, reads: reads))
                }
            }
            .withBoundSocket(fd)
            .wait()
        print("nio-udp-floor\(rawWrites ? " --raw-writes" : "")\(drain ? " --drain" : ""): 127.0.0.1:\(port) -> 127.0.0.1:\(upstreamPort)")
        try listener.closeFuture.wait()
    }
}

/// How the forwarder writes: through NIO's channels, or as our relay path does.
enum Writes: @unchecked Sendable {  // the writer is only used on the one event loop
    case channels
    case writer(DatagramWriter)

    /// Writes `datagram` (unflushed) from `channel`, whose socket (for the writer) is `socket`.
    func write(_ datagram: AddressedEnvelope<ByteBuffer>, on channel: Channel, socket: SocketHandle) {
        switch self {
        case .channels: channel.pipeline.syncOperations.write(NIOAny(datagram), promise: nil)
        case .writer(let writer): writer.enqueue(datagram.data, to: datagram.remoteAddress, from: socket)
        }
    }

    func flush(_ channel: Channel) {
        switch self {
        case .channels: channel.flush()
        case .writer(let writer): writer.flush()
        }
    }
}

/// How the forwarder reads: all through NIO's channels (vector reads), or as our relay path does.
enum Reads: @unchecked Sendable {  // the drain is only used on the one event loop
    case channels
    case drain(DatagramDrain)

    func options(_ bootstrap: DatagramBootstrap, listener: Bool) -> DatagramBootstrap {
        switch self {
        case .drain: return listener ? bootstrap.turnListenerReadOptions() : bootstrap.turnRelayReadOptions()
        case .channels:
            let count = listener ? 32 : 8
            let vectorReads = bootstrap.channelOption(.datagramVectorReadMessageCount, value: count)
                .channelOption(.maxMessagesPerRead, value: 1)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: count * 2048))
            guard listener else { return vectorReads }
            return vectorReads.channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
                .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
        }
    }

    /// After NIO's read of `channel` (descriptor `fd`): the rest of its datagrams, when draining.
    func rest(of channel: Channel, fd: CInt, _ body: (ByteBuffer, TransportAddress) -> Void) {
        guard case .drain(let drain) = self else { return }
        drain.drain(fd, while: channel.isActive) { payload, source, _ in body(payload, source) }
    }
}

/// One client's path: its address, and the upstream socket that speaks for it.
final class Route {
    let client: SocketAddress
    let listener: Channel
    let listenerFD: CInt
    let listenerSocket: SocketHandle
    let writes: Writes
    let reads: Reads
    var upstream: Channel?
    var upstreamFD: CInt = -1
    var upstreamSocket: SocketHandle?
    /// Datagrams that arrived before the upstream socket was bound.
    var waiting: [AddressedEnvelope<ByteBuffer>] = []
    var written = false

    init(client: SocketAddress, listener: Channel, listenerFD: CInt, listenerSocket: SocketHandle, writes: Writes, reads: Reads) {
        self.client = client
        self.listener = listener
        self.listenerFD = listenerFD
        self.listenerSocket = listenerSocket
        self.writes = writes
        self.reads = reads
    }

    func forward(_ datagram: AddressedEnvelope<ByteBuffer>) {
        if let upstream, let upstreamSocket {
            writes.write(datagram, on: upstream, socket: upstreamSocket)
        } else {
            waiting.append(datagram)
        }
    }

    /// A socket as StunTurn's writer writes from it (never closed while the forwarder runs).
    static func socket(_ channel: Channel, fd: CInt) -> SocketHandle {
        SocketHandle(fd: fd, localAddress: TransportAddress(ip: IPAddress(ipv4: 0), port: 0)) { channel.close(promise: nil) }
    }

    func open(on loop: EventLoop) throws {
        let route = NIOLoopBound(self, eventLoop: loop)
        let fd = try UDPSocket.bound(host: "127.0.0.1", port: 0)
        reads.options(DatagramBootstrap(group: loop), listener: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamSide(route: route.value))
                }
            }
            .withBoundSocket(fd)
            .assumeIsolated()
            .whenComplete { result in
                let route = route.value
                switch result {
                case .success(let channel):
                    route.upstream = channel
                    route.upstreamFD = fd
                    route.upstreamSocket = Self.socket(channel, fd: fd)
                    for datagram in route.waiting { route.forward(datagram) }
                    route.waiting = []
                    route.writes.flush(channel)
                case .failure(let error):
                    fatalError("nio-udp-floor: cannot bind an upstream socket: \(error)")
                }
            }
    }
}

/// The listening socket: client datagrams go out through their route's upstream socket.
final class ClientSide: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let upstreamAddress: SocketAddress
    let listenerFD: CInt
    let writes: Writes
    let reads: Reads
    var listenerSocket: SocketHandle?
    var routes: [Int: Route] = [:]  // by client port: all clients are on 127.0.0.1
    var unflushed: [Route] = []

    init(upstream: SocketAddress, listenerFD: CInt, writes: Writes, reads: Reads) {
        upstreamAddress = upstream
        self.listenerFD = listenerFD
        self.writes = writes
        self.reads = reads
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        forward(datagram.data, from: datagram.remoteAddress.port ?? 0, context: context) { datagram.remoteAddress }
    }

    func forward(_ payload: ByteBuffer, from clientPort: Int, context: ChannelHandlerContext, client: () -> SocketAddress) {
        let route: Route
        if let known = routes[clientPort] {
            route = known
        } else {
            let socket = listenerSocket ?? Route.socket(context.channel, fd: listenerFD)
            listenerSocket = socket
            route = Route(client: client(), listener: context.channel, listenerFD: listenerFD, listenerSocket: socket, writes: writes, reads: reads)
            routes[clientPort] = route
            do { try route.open(on: context.eventLoop) } catch { fatalError("nio-udp-floor: cannot open an upstream socket: \(error)") }
        }
        route.forward(AddressedEnvelope(remoteAddress: upstreamAddress, data: payload))
        if !route.written {
            route.written = true
            unflushed.append(route)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reads.rest(of: context.channel, fd: listenerFD) { payload, source in
            forward(payload, from: Int(source.port), context: context) { source.socketAddress() }
        }
        for route in unflushed {
            route.written = false
            if let upstream = route.upstream { writes.flush(upstream) }
        }
        unflushed.removeAll(keepingCapacity: true)
    }
}

/// An upstream socket: what comes back goes out of the listening socket to the client.
final class UpstreamSide: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let route: Route

    init(route: Route) { self.route = route }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        route.writes.write(AddressedEnvelope(remoteAddress: route.client, data: datagram.data), on: route.listener, socket: route.listenerSocket)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let route = route
        route.reads.rest(of: context.channel, fd: route.upstreamFD) { payload, _ in
            route.writes.write(AddressedEnvelope(remoteAddress: route.client, data: payload), on: route.listener, socket: route.listenerSocket)
        }
        route.writes.flush(route.listener)
    }
}
