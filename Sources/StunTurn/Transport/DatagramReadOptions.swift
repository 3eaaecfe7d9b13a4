import NIOCore
import NIOPosix

extension DatagramBootstrap {
    /// A UDP listener socket's read options: up to 32 datagrams per `recvmmsg`, one such read per
    /// wake-up (a second would mostly return EAGAIN), buffers sized for them, and 4 MiB kernel buffers.
    /// Public so that `bench/nio-udp-floor` measures NIO with exactly these options.
    public func turnListenerReadOptions() -> DatagramBootstrap {
        channelOption(.datagramVectorReadMessageCount, value: 32)
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 32 * 2048))
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
    }

    /// A relay socket's read options: up to 8 datagrams per `recvmmsg`, one such read per wake-up.
    public func turnRelayReadOptions() -> DatagramBootstrap {
        channelOption(.datagramVectorReadMessageCount, value: 8)
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 8 * 2048))
    }
}
