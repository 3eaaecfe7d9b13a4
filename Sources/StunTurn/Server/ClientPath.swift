import NIOCore

/// How packets get back to a client: a datagram to its address on the listener socket.
/// (Stream transports join here as another case.)
enum ClientPath {
    case datagram(Channel, SocketAddress)

    @inline(__always)
    func write(_ buffer: ByteBuffer) {
        switch self {
        case .datagram(let channel, let address):
            channel.write(AddressedEnvelope(remoteAddress: address, data: buffer), promise: nil)
        }
    }

    func flush() {
        switch self {
        case .datagram(let channel, _): channel.flush()
        }
    }

    var channel: Channel {
        switch self {
        case .datagram(let channel, _): return channel
        }
    }
}

/// Where a request came from and how to answer it.
struct RequestContext {
    let fiveTuple: FiveTuple
    let path: ClientPath
    var client: TransportAddress { fiveTuple.client }
}
