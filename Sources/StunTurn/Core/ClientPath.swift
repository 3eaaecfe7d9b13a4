import NIOCore

/// How packets get back to a client: a datagram to its address from the listener socket it wrote to,
/// or bytes on its TCP/TLS connection.
enum ClientPath {
    case datagram(SocketHandle, SocketAddress)
    case stream(StreamLink)

    /// Writes one STUN or ChannelData message. On a stream, ChannelData is padded to a multiple of four
    /// bytes (RFC 8656 §12.5); STUN messages always are.
    @inline(__always)
    func write(_ buffer: ByteBuffer, sink: DatagramSink) {
        switch self {
        case .datagram(let socket, let address):
            sink.enqueue(buffer, to: address, from: socket, segmentSize: 0)
        case .stream(let link):
            let pad = (4 - buffer.readableBytes % 4) % 4
            if pad == 0 {
                link.write(buffer)
            } else {
                var padded = buffer
                padded.writeRepeatingByte(0, count: pad)
                link.write(padded)
            }
        }
    }

    var isStream: Bool {
        if case .stream = self { return true }
        return false
    }
}

/// A request as it arrived: its five-tuple and the way back to its sender.
struct RequestInfo {
    let fiveTuple: FiveTuple
    let path: ClientPath
    /// The lookup chain's answer, when the request waited for one (`TurnAction.lookUpCredentials`).
    var resolved: ResolvedCredentials? = nil
    var client: TransportAddress { fiveTuple.client }
}
