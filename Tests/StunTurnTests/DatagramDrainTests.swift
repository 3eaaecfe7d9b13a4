import NIOCore
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import StunTurn

/// The relay path's own UDP reads (`DatagramDrain`): it reads everything a socket holds, in order and
/// with each datagram's source, at most `maxBatches` batches per call, drops and counts a datagram too
/// long for its slot, and reads on past an ICMP error reported on the socket.
@Suite struct DatagramDrainTests {
    /// A socket made as the relay path makes its sockets (left to the drain alone, no event loop reads
    /// it), a sending socket, and a drain whose cut datagrams are counted.
    final class Harness {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var fd: CInt = -1
        var target: SocketAddress!
        var sender: Channel!
        var cut = 0
        lazy var drain = DatagramDrain(truncated: { [unowned self] in cut += $0 })

        func start() async throws {
            fd = try UDPSocket.bound(host: "127.0.0.1", port: 0)
            var size: CInt = 1 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            target = SocketAddress(address, host: "127.0.0.1")
            sender = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        }

        /// Sends `datagrams` to the receiver. On loopback a send delivers into the receiver's queue
        /// before it returns, so they are all there when this returns.
        func send(_ datagrams: [[UInt8]]) async throws {
            for d in datagrams {
                sender.write(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: d)), promise: nil)
            }
            try await sender.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: [0xFF]))).get()
        }

        /// One drain call: the payloads read and their sources, and how many batches ended.
        func drainOnce() -> (payloads: [[UInt8]], sources: Set<TransportAddress>, batches: Int) {
            var payloads: [[UInt8]] = []
            var sources: Set<TransportAddress> = []
            var batches = 0
            drain.drain(fd, while: true) { payload, source, raw in
                payloads.append(Array(buffer: payload))
                sources.insert(source)
                #expect(TransportAddress(SocketAddress(drained: raw)) == source)
            } batchEnd: {
                batches += 1
            }
            return (payloads, sources, batches)
        }

        func close() async throws {
            try await sender.close()
            Glibc.close(fd)
            try await group.shutdownGracefully()
        }
    }

    static func withHarness(_ body: (Harness) async throws -> Void) async throws {
        let h = Harness()
        try await h.start()
        try await body(h)
        try await h.close()
    }

    @Test func readsEveryDatagramInOrderWithItsSourceThenStopsOnAnEmptySocket() async throws {
        try await Self.withHarness { h in
            let sent = (0..<100).map { i in [UInt8(i), UInt8(i), 1, 2, 3] }
            try await h.send(sent)
            let (payloads, sources, batches) = h.drainOnce()
            #expect(payloads == sent + [[0xFF]])
            #expect(sources == [TransportAddress(h.sender.localAddress!)!])
            #expect(batches == 4)  // 32 + 32 + 32 + 5: the short fourth read ends the drain
            #expect(h.drainOnce().payloads.isEmpty)
            #expect(h.cut == 0)
        }
    }

    @Test func readsAtMostMaxBatchesPerCallAndTheRestOnTheNext() async throws {
        try await Self.withHarness { h in
            let perCall = DatagramDrain.maxBatches * DatagramDrain.batch
            let sent = (0..<(perCall + 9)).map { i in [UInt8(truncatingIfNeeded: i), UInt8(truncatingIfNeeded: i >> 8)] }
            try await h.send(sent)
            let first = h.drainOnce()
            #expect(first.payloads.count == perCall)
            #expect(first.batches == DatagramDrain.maxBatches)
            let second = h.drainOnce()
            #expect(first.payloads + second.payloads == sent + [[0xFF]])
        }
    }

    @Test func aDatagramTooLongForItsSlotIsDroppedAndCountedAndTheRestRead() async throws {
        try await Self.withHarness { h in
            try await h.send([[1], [UInt8](repeating: 9, count: DatagramDrain.slot + 1), [2]])
            #expect(h.drainOnce().payloads == [[1], [2], [0xFF]])
            #expect(h.cut == 1)
        }
    }

    /// Has socket `fd` report ICMP errors (IP_RECVERR: an unconnected UDP socket does not otherwise)
    /// and provokes one: a send to a port nobody listens on comes back as port unreachable, which the
    /// kernel reports as ECONNREFUSED on the socket's next receive.
    static func provokeICMPError(on fd: CInt, group: EventLoopGroup) async throws {
        var on: CInt = 1
        #expect(setsockopt(fd, CInt(IPPROTO_IP), IP_RECVERR, &on, socklen_t(MemoryLayout<CInt>.size)) == 0)
        let closed = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let nobody = closed.localAddress!
        try await closed.close()
        let sent = nobody.withSockAddr { address, size in sendto(fd, [UInt8(0)], 1, 0, address, socklen_t(size)) }
        #expect(sent == 1)
    }

    @Test func readsOnPastAnICMPErrorReportedOnTheSocket() async throws {
        try await Self.withHarness { h in
            // The same on a twin socket shows the error is there to be read past.
            let twin = try UDPSocket.bound(host: "127.0.0.1", port: 0)
            defer { Glibc.close(twin) }
            try await Self.provokeICMPError(on: twin, group: h.group)
            var byte: UInt8 = 0
            #expect(recv(twin, &byte, 1, Int32(MSG_DONTWAIT)) == -1 && errno == ECONNREFUSED)

            try await Self.provokeICMPError(on: h.fd, group: h.group)
            try await h.send([[7], [8]])
            #expect(h.drainOnce().payloads == [[7], [8], [0xFF]])
        }
    }
}
