// The forwarder with NIO channels for reading and plain `sendmmsg` for writing (`nio-udp-floor
// --raw-writes`): every socket is made and bound here and handed to NIO with `withBoundSocket`, so its
// descriptor is known; datagrams are still read by NIO's channels on one event loop (our read options),
// and each read batch is copied into buffers allocated once and sent with one `sendmmsg` on that event
// loop, bypassing NIO's pending-write path. Splits the NIO floor into its read and its write side.
import CEpoll
import Glibc
import NIOCore
import NIOPosix
import StunTurn

/// Datagrams queued for one socket, sent with one `sendmmsg`.
final class RawBatch {
    static let capacity = 64
    static let slot = 2048
    let fd: Int32
    private let buffers = UnsafeMutablePointer<UInt8>.allocate(capacity: RawBatch.capacity * RawBatch.slot)
    private var lengths = [Int32](repeating: 0, count: RawBatch.capacity)
    private var targets = [sockaddr_in](repeating: sockaddr_in(), count: RawBatch.capacity)
    private var count = 0

    init(fd: Int32) { self.fd = fd }

    func add(_ data: ByteBuffer, to target: sockaddr_in) {
        if count == Self.capacity { send() }
        let length = min(data.readableBytes, Self.slot)
        data.withUnsafeReadableBytes { bytes in
            (buffers + count * Self.slot).update(from: bytes.bindMemory(to: UInt8.self).baseAddress!, count: length)
        }
        lengths[count] = Int32(length)
        targets[count] = target
        count += 1
    }

    func send() {
        guard count > 0 else { return }
        _ = cepoll_send_batch(fd, buffers, Int32(Self.slot), &lengths, &targets, 0, Int32(count))
        count = 0
    }
}

enum HybridForwarder {
    static func run(port: Int, upstreamPort: Int) throws -> Never {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fd = try RawForwarder.udpSocket(port: port)
        let listener = try DatagramBootstrap(group: group)
            .turnListenerReadOptions()
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HybridClientSide(listener: RawBatch(fd: fd), upstream: RawForwarder.loopback(port: upstreamPort)))
                }
            }
            .withBoundSocket(fd)
            .wait()
        print("nio-udp-floor --raw-writes: 127.0.0.1:\(port) -> 127.0.0.1:\(upstreamPort)")
        try listener.closeFuture.wait()
        exit(0)
    }
}

/// The listening socket: each client gets an upstream socket; its datagrams go out of it unchanged.
final class HybridClientSide: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let listener: RawBatch
    let upstream: sockaddr_in
    var routes = RouteTable<RawBatch>()
    var unsent: [RawBatch] = []

    init(listener: RawBatch, upstream: sockaddr_in) {
        self.listener = listener
        self.upstream = upstream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        let route = routes.route(for: datagram.remoteAddress) { try open(for: datagram.remoteAddress, on: context.eventLoop) }
        route.add(datagram.data, to: upstream)
        if !unsent.contains(where: { $0 === route }) { unsent.append(route) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        for route in unsent { route.send() }
        unsent.removeAll(keepingCapacity: true)
    }

    private func open(for client: SocketAddress, on loop: EventLoop) throws -> RawBatch {
        let fd = try RawForwarder.udpSocket(port: 0)
        var clientAddress = RawForwarder.loopback(port: client.port ?? 0)
        if case .v4(let v4) = client { clientAddress = v4.address }
        let listener = NIOLoopBound(self.listener, eventLoop: loop)
        let address = clientAddress
        _ = DatagramBootstrap(group: loop)
            .turnRelayReadOptions()
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HybridUpstreamSide(listener: listener.value, client: address))
                }
            }
            .withBoundSocket(fd)
        return RawBatch(fd: fd)
    }
}

/// An upstream socket: what comes back goes out of the listening socket to the client.
final class HybridUpstreamSide: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let listener: RawBatch
    let client: sockaddr_in

    init(listener: RawBatch, client: sockaddr_in) {
        self.listener = listener
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        listener.add(unwrapInboundIn(data).data, to: client)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        listener.send()
    }
}
