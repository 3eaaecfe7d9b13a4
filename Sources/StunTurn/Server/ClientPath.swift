import NIOCore

/// How packets get back to a client: a datagram to its address on the listener socket, or bytes on
/// its TCP/TLS connection.
enum ClientPath {
    case datagram(WritableSocket, SocketAddress)
    case stream(Channel)

    /// Writes one STUN message or ChannelData message. On a stream, ChannelData is padded to a
    /// multiple of four bytes (RFC 8656 §12.5); STUN messages always are.
    @inline(__always)
    func write(_ buffer: ByteBuffer) {
        switch self {
        case .datagram(let socket, let address):
            socket.channel.write(AddressedEnvelope(remoteAddress: address, data: buffer), promise: nil)
        case .stream(let channel):
            let pad = (4 - buffer.readableBytes % 4) % 4
            if pad == 0 {
                channel.write(buffer, promise: nil)
            } else {
                var padded = buffer
                padded.writeRepeatingByte(0, count: pad)
                channel.write(padded, promise: nil)
            }
        }
    }

    func flush() { channel.flush() }

    var channel: Channel {
        switch self {
        case .datagram(let socket, _): return socket.channel
        case .stream(let channel): return channel
        }
    }

    var isStream: Bool {
        if case .stream = self { return true }
        return false
    }
}

/// Where a request came from and how to answer it.
struct RequestContext {
    let fiveTuple: FiveTuple
    let path: ClientPath
    var client: TransportAddress { fiveTuple.client }
}
