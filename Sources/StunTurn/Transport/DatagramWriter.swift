import CUDPBatch
import NIOCore

/// The datagram sink of the sockets: every UDP write of one event loop (relayed datagrams, GSO runs,
/// STUN answers) is copied into one arena allocated once and sent with `sendmmsg` straight on the
/// sockets' descriptors, on the event loop that owns those sockets, at the end of the event-loop tick.
/// NIO's channels read the sockets; their pending-write path cost about a fifth of a relay's CPU under
/// a paced load (BENCHMARKS.md, "NIO reads, plain writes"). Confined to its event loop. Public for
/// `bench/nio-udp-floor --raw-writes`, which writes with it to measure NIO's reads under exactly our writes.
public final class DatagramWriter: DatagramSink {
    static let arenaCapacity = 512 * 1024
    static let capacity = 512

    private let arena = UnsafeMutableRawPointer.allocate(byteCount: DatagramWriter.arenaCapacity, alignment: 16)
    private let datagrams = UnsafeMutablePointer<cudp_datagram>.allocate(capacity: DatagramWriter.capacity)
    /// The socket each datagram leaves from: a socket closed since (by us or by NIO) no longer owns
    /// its descriptor, whose number may already belong to another socket.
    private var sockets: [SocketHandle?] = Array(repeating: nil, count: DatagramWriter.capacity)
    private var count = 0
    private var used = 0
    /// Called with how many datagrams a flush could not send (refused by the kernel, or their socket closed).
    private let dropped: (Int) -> Void
    /// Called when the first datagram is queued after a flush (the owner schedules the next flush).
    private let becameNonEmpty: () -> Void

    public init(dropped: @escaping (Int) -> Void, becameNonEmpty: @escaping () -> Void = {}) {
        self.dropped = dropped
        self.becameNonEmpty = becameNonEmpty
    }

    deinit {
        arena.deallocate()
        datagrams.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// Queues `bytes` to `address` from `socket`: one datagram, or with `segmentSize` several of that
    /// size in one GSO write.
    @inline(__always)
    public func enqueue(_ bytes: ByteBuffer, to address: SocketAddress, from socket: SocketHandle, segmentSize: Int = 0) {
        let length = bytes.readableBytes
        guard length <= Self.arenaCapacity else {
            dropped(1)
            return
        }
        if count == Self.capacity || used + length > Self.arenaCapacity { flush() }
        if count == 0 { becameNonEmpty() }
        bytes.withUnsafeReadableBytes { source in
            if let base = source.baseAddress { (arena + used).copyMemory(from: base, byteCount: length) }
        }
        let d = datagrams + count
        d.pointee.fd = socket.fd
        d.pointee.offset = UInt32(used)
        d.pointee.length = UInt32(length)
        d.pointee.segment_size = UInt16(segmentSize)
        d.pointee.address_length = UInt16(address.withSockAddr { sockaddr, size in
            withUnsafeMutableBytes(of: &d.pointee.address) { target in
                target.copyMemory(from: UnsafeRawBufferPointer(start: sockaddr, count: min(size, target.count)))
            }
            return min(size, MemoryLayout<sockaddr_in6>.size)
        })
        sockets[count] = socket
        count += 1
        used += (length + 15) & ~15
    }

    /// Sends everything queued.
    public func flush() {
        guard count > 0 else { return }
        var closed = 0
        for i in 0..<count where !(sockets[i]?.isOpen ?? false) {
            datagrams[i].fd = -1
            closed += 1
        }
        let refused = Int(cudp_send_batch(arena.assumingMemoryBound(to: UInt8.self), datagrams, Int32(count)))
        for i in 0..<count { sockets[i] = nil }
        count = 0
        used = 0
        if refused + closed > 0 { dropped(refused + closed) }
    }
}
