import NIOCore

/// Coalesces consecutive equal-sized datagrams to one destination into a single UDP GSO write
/// (Linux UDP_SEGMENT, queued on the core's `DatagramSink`): the kernel walks its send path once
/// per batch instead of once per packet. Within one read batch a relay typically forwards runs of
/// same-sized packets to one destination (RTP video packets of a frame, a flood from a test client).
///
/// Without GSO (unsupported kernel, or disabled) every datagram is written on its own.
struct DatagramCoalescer {
    /// Linux accepts up to 64 segments per GSO send (UDP_MAX_SEGMENTS) and one IP packet's worth of bytes.
    static let maxSegments = 64
    static let maxBytes = 65_000

    private var buffer: ByteBuffer?
    private var target = TransportAddress(ip: IPAddress(ipv4: 0), port: 0)
    private var socketAddress: SocketAddress?
    private var segmentSize = 0
    private var segments = 0

    var isEmpty: Bool { segments == 0 }

    /// GSO needs every segment but the last to be exactly `segmentSize`, one destination, and limits
    /// on count and total size.
    @inline(__always)
    private func canJoin(length: Int, to target: TransportAddress) -> Bool {
        length == segmentSize && target == self.target && segments < Self.maxSegments
            && buffer!.readableBytes + length <= Self.maxBytes
    }

    /// Queues one datagram of exactly `length` bytes, written by `body`. Emits (queues, unsent) the
    /// pending batch on `socket` first if this datagram cannot join it.
    @inline(__always)
    mutating func add(length: Int, to target: TransportAddress, _ address: SocketAddress, gso: Bool, socket: SocketHandle,
                      sink: DatagramSink, allocator: ByteBufferAllocator, _ body: (inout ByteBuffer) -> Void) {
        if segments > 0 {
            if gso, canJoin(length: length, to: target) {
                body(&buffer!)
                segments += 1
                return
            }
            emit(socket, sink: sink)
        }
        var b = allocator.buffer(capacity: gso ? min(Self.maxBytes, max(length, 1) * 16) : length)
        body(&b)
        buffer = b
        self.target = target
        socketAddress = address
        segmentSize = length
        segments = 1
    }

    /// Queues a ready-made datagram. A datagram that stays alone is handed to the writer as the very
    /// buffer passed in (a slice of the received batch, copied once into the writer's arena); only when
    /// a second one joins is a batch buffer made.
    @inline(__always)
    mutating func add(_ payload: ByteBuffer, to target: TransportAddress, _ address: SocketAddress, gso: Bool, socket: SocketHandle,
                      sink: DatagramSink, allocator: ByteBufferAllocator) {
        let length = payload.readableBytes
        if segments > 0 {
            if gso, canJoin(length: length, to: target) {
                if segments == 1 {
                    var batch = allocator.buffer(capacity: min(Self.maxBytes, max(length, 1) * 16))
                    batch.writeImmutableBuffer(buffer!)
                    buffer = batch
                }
                buffer!.writeImmutableBuffer(payload)
                segments += 1
                return
            }
            emit(socket, sink: sink)
        }
        buffer = payload
        self.target = target
        socketAddress = address
        segmentSize = length
        segments = 1
    }

    /// Queues the pending batch (if any) from `socket` on the sink.
    @inline(__always)
    mutating func emit(_ socket: SocketHandle, sink: DatagramSink) {
        guard segments > 0, let b = buffer, let address = socketAddress else { return }
        sink.enqueue(b, to: address, from: socket, segmentSize: segments > 1 ? segmentSize : 0)
        buffer = nil
        segments = 0
    }
}

