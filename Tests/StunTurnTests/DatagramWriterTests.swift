import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import StunTurn

/// The relay path's own UDP writes (`DatagramWriter`): what it queues arrives, a GSO run arrives as
/// its separate datagrams, and nothing is written to a socket whose channel has closed.
@Suite struct DatagramWriterTests {
    /// A receiving socket on 127.0.0.1 that hands over the datagrams it gets, in order.
    final class Receiver: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let received: AsyncStream<[UInt8]>
        private let continuation: AsyncStream<[UInt8]>.Continuation

        init() { (received, continuation) = AsyncStream.makeStream() }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            continuation.yield(Array(buffer: unwrapInboundIn(data).data))
        }
    }

    final class DropCount: Sendable {
        let value = Atomic(0)
    }

    /// A receiving socket on 127.0.0.1, a writer whose drops are counted, and sending sockets made as
    /// the relay path makes its sockets (bound here, adopted by NIO).
    final class Harness {
        let group: EventLoopGroup
        let target: SocketAddress
        let writer: DatagramWriter
        private var received: AsyncStream<[UInt8]>.AsyncIterator
        private let drops = DropCount()
        private var senders: [Channel] = []

        init(group: EventLoopGroup, target: SocketAddress, received: AsyncStream<[UInt8]>) {
            self.group = group
            self.target = target
            self.received = received.makeAsyncIterator()
            writer = DatagramWriter(dropped: { [drops] in drops.value.add($0, ordering: .relaxed) })
        }

        var dropped: Int { drops.value.load(ordering: .relaxed) }

        /// The next datagram the receiver got.
        func next() async -> [UInt8]? { await received.next() }

        /// A sending socket and its handle (closing the handle closes the channel).
        func sender() async throws -> SocketHandle {
            let fd = try UDPSocket.bound(host: "127.0.0.1", port: 0)
            let channel = try await DatagramBootstrap(group: group).withBoundSocket(fd).get()
            senders.append(channel)
            return SocketHandle(fd: fd, localAddress: TransportAddress(ip: IPAddress(ipv4: 0x7F00_0001), port: 0)) {
                channel.close(promise: nil)
            }
        }

        func close() async throws {
            for channel in senders { try? await channel.close() }
        }
    }

    static func withHarness(_ body: (Harness) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let receiver = Receiver()
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(receiver) }
            .bind(host: "127.0.0.1", port: 0).get()
        let harness = Harness(group: group, target: channel.localAddress!, received: receiver.received)
        try await body(harness)
        try await harness.close()
        try await channel.close()
        try await group.shutdownGracefully()
    }

    @Test func queuedDatagramsArriveInOrderAndAGSORunArrivesAsItsSegments() async throws {
        try #require(System.supportsUDPSegmentationOffload, "this test needs UDP GSO (Linux 4.18 or later)")
        try await Self.withHarness { h in
            let socket = try await h.sender()
            h.writer.enqueue(ByteBuffer(bytes: [1, 2, 3]), to: h.target, from: socket)
            // Three segments of 4 bytes and a short last one, in one write.
            h.writer.enqueue(ByteBuffer(bytes: [10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12, 13]), to: h.target, from: socket,
                             segmentSize: 4)
            #expect(!h.writer.isEmpty)
            h.writer.flush()
            #expect(h.writer.isEmpty)
            #expect(await h.next() == [1, 2, 3])
            #expect(await h.next() == [10, 10, 10, 10])
            #expect(await h.next() == [11, 11, 11, 11])
            #expect(await h.next() == [12, 12, 12, 12])
            #expect(await h.next() == [13])
            #expect(h.dropped == 0)
        }
    }

    @Test func aDatagramQueuedForASocketClosedSinceIsCountedNotSent() async throws {
        try await Self.withHarness { h in
            let closing = try await h.sender()
            let open = try await h.sender()
            h.writer.enqueue(ByteBuffer(bytes: [1]), to: h.target, from: closing)
            closing.close()
            h.writer.enqueue(ByteBuffer(bytes: [2]), to: h.target, from: open)
            h.writer.flush()
            // The first thing to arrive is the open socket's datagram: the other was never written.
            #expect(await h.next() == [2])
            #expect(h.dropped == 1)
        }
    }

    @Test func aDatagramTheKernelRefusesIsCountedAndTheRestStillGo() async throws {
        try await Self.withHarness { h in
            let socket = try await h.sender()
            // Larger than any UDP datagram can be: sendmmsg refuses it (EMSGSIZE).
            h.writer.enqueue(ByteBuffer(repeating: 7, count: 70_000), to: h.target, from: socket)
            h.writer.enqueue(ByteBuffer(bytes: [3]), to: h.target, from: socket)
            h.writer.flush()
            #expect(await h.next() == [3])
            #expect(h.dropped == 1)
        }
    }
}
