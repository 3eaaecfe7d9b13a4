import CUDPBatch
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The relay path's UDP reads past the first, one per event loop. NIO's channel still wakes for a
/// readable listener or relay socket and reads one datagram through its pipeline; when that read
/// ends, its handler drains the rest of the socket here with `recvmmsg` on the descriptor, on the
/// same event loop, into one buffer reused from batch to batch, so a busy socket's datagrams skip
/// NIO's per-datagram read path (a `SocketAddress` with its `inet_ntop` string, an envelope and a
/// pipeline pass each). A bare forwarder read this way cost about a tenth less CPU under the paced
/// benchmark; in the server the gain was within the benchmark machine's noise (BENCHMARKS.md,
/// "Draining sockets past NIO's first read"). Confined to its event loop. Public for
/// `bench/nio-udp-floor --drain`, which reads with it to measure NIO's wake-ups under exactly our reads.
public final class DatagramDrain {
    /// Bytes per datagram. A longer one is dropped and counted, whether drained here or read by NIO
    /// (whose read buffer is a byte longer, `turnRelayReadOptions`, so that `fits` can tell).
    public static let slot = 2048
    public static let batch = 32
    /// At most this many `recvmmsg` per wake-up: a socket that never empties must not starve the
    /// loop's other sockets, and NIO's selector (level-triggered) wakes the handler again for the rest.
    public static let maxBatches = 8

    private var buffer: ByteBuffer
    private let from = UnsafeMutablePointer<sockaddr_in6>.allocate(capacity: DatagramDrain.batch)
    private let lengths = UnsafeMutablePointer<CInt>.allocate(capacity: DatagramDrain.batch)
    /// Called with how many datagrams were too long for a slot.
    private let truncated: (Int) -> Void

    public init(allocator: ByteBufferAllocator = ByteBufferAllocator(), truncated: @escaping (Int) -> Void) {
        buffer = allocator.buffer(capacity: Self.slot * Self.batch)
        self.truncated = truncated
    }

    /// False for a datagram NIO read that is longer than a slot (or was cut to its read buffer).
    @inline(__always)
    static func fits(_ datagram: ByteBuffer) -> Bool { datagram.readableBytes <= slot }

    deinit {
        from.deallocate()
        lengths.deallocate()
    }

    /// Reads what `fd` holds, `batch` datagrams per `recvmmsg`, until a read comes back short or
    /// `maxBatches` were read, and hands each datagram to `body` with its source and raw address (a
    /// slice of the shared buffer, valid as long as `body` or its callees keep it; the next batch reads
    /// into fresh storage if they do). `batchEnd` runs after each batch, so the caller can send on what
    /// the batch produced and let go of its slices. Stops once `isOpen` is false (the socket's channel
    /// closed: its descriptor number may already be another socket's).
    @inline(__always)
    public func drain(_ fd: CInt, while isOpen: @autoclosure () -> Bool,
                      _ body: (ByteBuffer, TransportAddress, UnsafePointer<sockaddr_in6>) -> Void, batchEnd: () -> Void = {}) {
        for _ in 0..<Self.maxBatches {
            guard isOpen() else { return }
            buffer.clear()
            let n = buffer.withUnsafeMutableWritableBytes { raw in
                Int(cudp_recv_batch(fd, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), CInt(Self.slot), CInt(Self.batch), from, lengths))
            }
            if n < 0 {
                // ECONNREFUSED: an ICMP error from an earlier send, now consumed; the data behind it is
                // still there. EAGAIN: nothing left. Anything else NIO's next read reports.
                if errno == ECONNREFUSED { continue }
                return
            }
            buffer.moveWriterIndex(forwardBy: n * Self.slot)
            var cut = 0
            for i in 0..<n {
                let length = Int(lengths[i])
                guard length >= 0 else {
                    cut += 1
                    continue
                }
                guard let source = TransportAddress(socketAddress: from + i) else { continue }
                body(buffer.getSlice(at: i * Self.slot, length: length)!, source, from + i)
            }
            if cut > 0 { truncated(cut) }
            batchEnd()
            if n < Self.batch { return }
        }
    }
}

extension TransportAddress {
    /// The address in a `sockaddr_in` or `sockaddr_in6` (as `sin6_family` says), without formatting it.
    init?(socketAddress raw: UnsafePointer<sockaddr_in6>) {
        switch CInt(raw.pointee.sin6_family) {
        case AF_INET:
            let v4 = UnsafeRawPointer(raw).load(as: sockaddr_in.self)
            self.init(ip: IPAddress(ipv4: UInt32(bigEndian: v4.sin_addr.s_addr)), port: UInt16(bigEndian: v4.sin_port))
        case AF_INET6:
            var address = raw.pointee.sin6_addr
            guard let ip = withUnsafeBytes(of: &address, { IPAddress(bytes: $0) }) else { return nil }
            self.init(ip: ip, port: UInt16(bigEndian: raw.pointee.sin6_port))
        default:
            return nil
        }
    }
}

extension SocketAddress {
    /// NIO's address for a `sockaddr_in` or `sockaddr_in6` read by `DatagramDrain` (formats the host
    /// string, so only built when an answer or a new allocation needs it).
    init(drained raw: UnsafePointer<sockaddr_in6>) {
        if CInt(raw.pointee.sin6_family) == AF_INET {
            self.init(UnsafeRawPointer(raw).load(as: sockaddr_in.self))
        } else {
            self.init(raw.pointee)
        }
    }
}
