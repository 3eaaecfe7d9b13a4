import NIOCore

/// What the core asks the transport shell to do (the core itself opens, binds, connects and closes
/// nothing). Results that take time come back to the core as events: `TurnCore.relayBound`,
/// `relayBindFailed`, `peerConnected`, `peerConnectFailed`, `peerAccepted`, `peerClosed`.
enum TurnAction {
    /// Send a STUN message to a client (a datagram through the sink, or bytes on its connection).
    case send(ByteBuffer, to: ClientPath)
    /// The same after `delay`: a failed authentication answered late, so that guessing is slow.
    case sendLater(ByteBuffer, to: ClientPath, after: TimeAmount)
    /// Make a relay socket for a pending allocation.
    case bindRelay(RelayBindRequest)
    /// Open an RFC 6062 connection from a TCP allocation's relayed address to a peer.
    case connectPeer(PeerTCPConnection, from: SocketHandle, to: TransportAddress)
    /// Hand a client's TCP/TLS connection over to a peer connection as its data connection (RFC 6062
    /// §5.4): after the success response the connection carries the peer's bytes, not STUN.
    case joinDataConnection(StreamLink, PeerTCPConnection)
    /// Close a socket the core no longer uses (a relay socket of an allocation that ended).
    case close(SocketHandle)
    /// Close an RFC 6062 peer connection and its data connection.
    case closePeerConnection(PeerTCPConnection)
    /// Ask the lookup chain for a request's username off the event loop
    /// (`CredentialStore.resolveLookingUp`), then hand the answer back (`TurnCore.credentialsResolved`).
    /// Other traffic goes on meanwhile.
    case lookUpCredentials(PendingLookup)
}

/// A request waiting for the lookup chain's answer on its username.
struct PendingLookup {
    let username: String
    let message: StunMessage
    let request: RequestInfo
}

/// A relay socket for pending allocation `allocation`: UDP (optionally on the descriptor that has held
/// the port since its reservation, `heldSocket`) or a listening TCP socket (RFC 6062). `holdReservation`:
/// first bind a socket to the port reserved under this token (EVEN-PORT with R) so that nothing else
/// takes it; if that fails the core hears `relayBindFailed(.reservedPortTaken)`.
struct RelayBindRequest {
    enum Slot { case primary, additional }
    let allocation: UInt64
    let slot: Slot
    let port: UInt16
    let family: AddressFamily
    let tcp: Bool
    let dontFragment: Bool
    let heldSocket: CInt?
    let holdReservation: UInt64?
}

/// Why the shell could not make a relay socket.
enum RelayBindFailure: Error {
    /// The port is taken on this host (another process, or a socket outside the pool).
    case portTaken(Error)
    /// The port reserved under the request's token could not be held.
    case reservedPortTaken
}

/// A socket the core relays through (a UDP listener, a relay socket, a TCP allocation's listening
/// socket), made by the shell. The core reads its address and hands it to the sink; only the shell
/// closes it, when the core says so (`TurnAction.close`) or when the socket fails.
public final class SocketHandle {
    /// The descriptor the sink writes to; -1 where nothing writes by descriptor (in memory, TCP).
    public let fd: CInt
    public let localAddress: TransportAddress
    /// False once the socket is closed (its descriptor number may then belong to another socket).
    public internal(set) var isOpen = true
    /// The allocation a relay socket belongs to, set when it is registered and cleared when it ends
    /// (a strong reference: a weak one would put the allocation's reference counts in a side table,
    /// which every retain and release on the relay path would then go through).
    var allocation: Allocation?
    private let closeSocket: () -> Void

    public init(fd: CInt, localAddress: TransportAddress, close: @escaping () -> Void) {
        self.fd = fd
        self.localAddress = localAddress
        self.closeSocket = close
    }

    /// Closes the socket (the shell, carrying out `TurnAction.close`).
    public func close() {
        guard isOpen else { return }
        isOpen = false
        allocation = nil
        closeSocket()
    }
}

/// The one way relayed datagrams and STUN answers over UDP leave: queued here, sent by the sink at the
/// end of the event-loop tick (`DatagramWriter`, with `sendmmsg` and GSO) or kept (`MemoryDatagramSink`,
/// for tests and the fuzzer).
public protocol DatagramSink: AnyObject {
    /// Queues `bytes` to `address` from `socket`: one datagram, or with `segmentSize` > 0 several of that
    /// size (the last may be shorter) in one GSO write.
    func enqueue(_ bytes: ByteBuffer, to address: SocketAddress, from socket: SocketHandle, segmentSize: Int)
}

/// A client's TCP/TLS connection as the core writes to it; the connection's owner (the shell) decides
/// when bytes go out (at the end of the event-loop tick).
protocol StreamLink: AnyObject {
    func write(_ buffer: ByteBuffer)
}
