// nio-udp-floor: what a UDP relay whose data path runs through SwiftNIO channels costs at the very least.
//
// A bare forwarder on one NIO event loop, shaped like webrtc-server's TURN relay path: one listening
// socket facing the clients and one upstream socket per client, with the read options of our listener
// and relay sockets (StunTurn's `turnListenerReadOptions`/`turnRelayReadOptions`: vector reads of 32 and
// of 8 datagrams), each read batch flushed once. It forwards every datagram unchanged: no parsing, no
// authentication, no permission or channel lookup, no counters, only a table from client port to
// upstream socket. Put in front of coturn (clients → floor → coturn's listener), it carries per round
// trip what a TURN server's relay carries (two datagrams read, two written), so its CPU per relayed
// packet, measured in the same run as coturn's own, bounds from below any relay built on NIO channels.
// With --raw it forwards the same way on plain sockets instead (RawForwarder.swift).
// `bench/turn_bench.py --floor` runs both; the figures are in BENCHMARKS.md.
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
    @Flag(help: "Read with NIO channels, write with plain sendmmsg on the same sockets.") var rawWrites = false

    func validate() throws {
        guard (1...65535).contains(port), (1...65535).contains(upstreamPort) else {
            throw ValidationError("--port and --upstream-port must be between 1 and 65535")
        }
    }

    func run() throws {
        if raw { try RawForwarder(port: port, upstreamPort: upstreamPort).run() }
        if rawWrites { try HybridForwarder.run(port: port, upstreamPort: upstreamPort) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try SocketAddress(ipAddress: "127.0.0.1", port: upstreamPort)
        let listener = try DatagramBootstrap(group: group)
            .turnListenerReadOptions()
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ClientSide(upstream: upstream))
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .wait()
        print("nio-udp-floor: 127.0.0.1:\(port) -> 127.0.0.1:\(upstreamPort)")
        try listener.closeFuture.wait()
    }
}

/// Each client's route, by its port (all clients are on 127.0.0.1), opened when the client is first seen.
struct RouteTable<Route> {
    private var routes: [Int: Route] = [:]

    mutating func route(for client: SocketAddress, open: () throws -> Route) -> Route {
        let port = client.port ?? 0
        if let known = routes[port] { return known }
        do {
            let route = try open()
            routes[port] = route
            return route
        } catch {
            fatalError("nio-udp-floor: cannot open an upstream socket: \(error)")
        }
    }
}

/// One client's path: its address, and the upstream socket that speaks for it.
final class Route {
    let client: SocketAddress
    let listener: Channel
    var upstream: Channel?
    /// Datagrams that arrived before the upstream socket was bound.
    var waiting: [AddressedEnvelope<ByteBuffer>] = []
    var written = false

    init(client: SocketAddress, listener: Channel) {
        self.client = client
        self.listener = listener
    }

    func forward(_ datagram: AddressedEnvelope<ByteBuffer>) {
        if let upstream {
            upstream.pipeline.syncOperations.write(NIOAny(datagram), promise: nil)
        } else {
            waiting.append(datagram)
        }
    }

    func open(on loop: EventLoop) {
        let route = NIOLoopBound(self, eventLoop: loop)
        DatagramBootstrap(group: loop)
            .turnRelayReadOptions()
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamSide(route: route.value))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .assumeIsolated()
            .whenComplete { result in
                let route = route.value
                switch result {
                case .success(let channel):
                    route.upstream = channel
                    for datagram in route.waiting { route.forward(datagram) }
                    route.waiting = []
                    channel.flush()
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
    var routes = RouteTable<Route>()
    var unflushed: [Route] = []

    init(upstream: SocketAddress) { upstreamAddress = upstream }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        let route = routes.route(for: datagram.remoteAddress) {
            let route = Route(client: datagram.remoteAddress, listener: context.channel)
            route.open(on: context.eventLoop)
            return route
        }
        route.forward(AddressedEnvelope(remoteAddress: upstreamAddress, data: datagram.data))
        if !route.written {
            route.written = true
            unflushed.append(route)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        for route in unflushed {
            route.written = false
            route.upstream?.flush()
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
        route.listener.pipeline.syncOperations.write(
            NIOAny(AddressedEnvelope(remoteAddress: route.client, data: datagram.data)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        route.listener.flush()
    }
}
