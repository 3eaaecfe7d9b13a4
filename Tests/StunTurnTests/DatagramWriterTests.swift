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

    /// A sending socket made as the relay path makes its sockets: bound here, adopted by NIO.
    static func sender(_ group: EventLoopGroup) async throws -> (Channel, CInt) {
        let fd = try UDPSocket.bound(host: "127.0.0.1", port: 0)
        return (try await DatagramBootstrap(group: group).withBoundSocket(fd).get(), fd)
    }

    static func withReceiver(_ body: (EventLoopGroup, SocketAddress, AsyncStream<[UInt8]>.AsyncIterator) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let receiver = Receiver()
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(receiver) }
            .bind(host: "127.0.0.1", port: 0).get()
        try await body(group, channel.localAddress!, receiver.received.makeAsyncIterator())
        try await channel.close()
        try await group.shutdownGracefully()
    }

    @Test func queuedDatagramsArriveInOrderAndAGSORunArrivesAsItsSegments() async throws {
        try #require(System.supportsUDPSegmentationOffload, "this test needs UDP GSO (Linux 4.18 or later)")
        try await Self.withReceiver { group, target, iterator in
            var iterator = iterator
            let (channel, fd) = try await Self.sender(group)
            let dropped = Atomic(0)
            let writer = DatagramWriter(dropped: { dropped.add($0, ordering: .relaxed) })
            writer.enqueue(ByteBuffer(bytes: [1, 2, 3]), to: target, fd: fd, channel: channel)
            // Three segments of 4 bytes and a short last one, in one write.
            writer.enqueue(ByteBuffer(bytes: [10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12, 13]), to: target, fd: fd,
                           channel: channel, segmentSize: 4)
            #expect(!writer.isEmpty)
            writer.flush()
            #expect(writer.isEmpty)
            #expect(await iterator.next() == [1, 2, 3])
            #expect(await iterator.next() == [10, 10, 10, 10])
            #expect(await iterator.next() == [11, 11, 11, 11])
            #expect(await iterator.next() == [12, 12, 12, 12])
            #expect(await iterator.next() == [13])
            #expect(dropped.load(ordering: .relaxed) == 0)
            try await channel.close()
        }
    }

    @Test func aDatagramQueuedForASocketClosedSinceIsCountedNotSent() async throws {
        try await Self.withReceiver { group, target, iterator in
            var iterator = iterator
            let (closing, closingFD) = try await Self.sender(group)
            let (open, openFD) = try await Self.sender(group)
            let dropped = Atomic(0)
            let writer = DatagramWriter(dropped: { dropped.add($0, ordering: .relaxed) })
            writer.enqueue(ByteBuffer(bytes: [1]), to: target, fd: closingFD, channel: closing)
            try await closing.close()
            writer.enqueue(ByteBuffer(bytes: [2]), to: target, fd: openFD, channel: open)
            writer.flush()
            // The first thing to arrive is the open socket's datagram: the other was never written.
            #expect(await iterator.next() == [2])
            #expect(dropped.load(ordering: .relaxed) == 1)
            try await open.close()
        }
    }

    @Test func aDatagramTheKernelRefusesIsCountedAndTheRestStillGo() async throws {
        try await Self.withReceiver { group, target, iterator in
            var iterator = iterator
            let (channel, fd) = try await Self.sender(group)
            let dropped = Atomic(0)
            let writer = DatagramWriter(dropped: { dropped.add($0, ordering: .relaxed) })
            // Larger than any UDP datagram can be: sendmmsg refuses it (EMSGSIZE).
            writer.enqueue(ByteBuffer(repeating: 7, count: 70_000), to: target, fd: fd, channel: channel)
            writer.enqueue(ByteBuffer(bytes: [3]), to: target, fd: fd, channel: channel)
            writer.flush()
            #expect(await iterator.next() == [3])
            #expect(dropped.load(ordering: .relaxed) == 1)
            try await channel.close()
        }
    }
}
