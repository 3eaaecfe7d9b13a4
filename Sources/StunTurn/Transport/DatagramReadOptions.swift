import NIOCore
import NIOPosix

extension DatagramBootstrap {
    /// A UDP listener socket's read options: NIO reads one datagram per wake-up through the channel,
    /// and the handler drains the rest itself with `DatagramDrain`; 4 MiB kernel buffers. Public for
    /// `bench/nio-udp-floor --drain`, which reads with them.
    public func turnListenerReadOptions() -> DatagramBootstrap {
        turnRelayReadOptions()
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
    }

    /// A relay socket's read options: one datagram per wake-up through the channel, the rest drained.
    /// The read buffer is a byte longer than a drain slot, so that a longer datagram shows.
    public func turnRelayReadOptions() -> DatagramBootstrap {
        channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: DatagramDrain.slot + 1))
    }
}
