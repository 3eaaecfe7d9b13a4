import NIOCore

/// A datagram sink that keeps what it is given, for the in-memory tests and the fuzzer: every datagram
/// with the socket it left from and where it went (a GSO run split into its segments, as the kernel
/// would send them).
final class MemoryDatagramSink: DatagramSink {
    struct Datagram {
        let from: SocketHandle
        let to: SocketAddress
        let bytes: [UInt8]
    }

    private(set) var sent: [Datagram] = []
    /// Datagrams queued from a socket closed by then: dropped, as the writer drops them.
    private(set) var dropped = 0

    func enqueue(_ bytes: ByteBuffer, to address: SocketAddress, from socket: SocketHandle, segmentSize: Int) {
        guard socket.isOpen else {
            dropped += 1
            return
        }
        let all = Array(bytes.readableBytesView)
        guard segmentSize > 0 else {
            sent.append(Datagram(from: socket, to: address, bytes: all))
            return
        }
        for start in stride(from: 0, to: all.count, by: segmentSize) {
            sent.append(Datagram(from: socket, to: address, bytes: Array(all[start..<min(start + segmentSize, all.count)])))
        }
    }

    /// Takes what was sent so far.
    func take() -> [Datagram] {
        defer { sent = [] }
        return sent
    }
}

/// A client's TCP/TLS connection in memory: keeps what the core writes to it.
final class MemoryStreamLink: StreamLink {
    private(set) var written: [[UInt8]] = []

    func write(_ buffer: ByteBuffer) { written.append(Array(buffer.readableBytesView)) }

    func take() -> [[UInt8]] {
        defer { written = [] }
        return written
    }
}

/// Carries a core's actions out in memory, for the in-memory tests and the fuzzer: answers go to the
/// sink or the stream link as in the real shell; relay sockets are handles without a descriptor on the
/// port asked for (unless the test refuses that port); Connects, joins and closes are recorded for the
/// test to look at and answer.
final class MemoryShell {
    let core: TurnCore
    let sink: MemoryDatagramSink
    /// Ports whose bind fails as if another socket had them; reservations that cannot be held.
    var refusedPorts: Set<UInt16> = []
    var reservationsRefused = false
    /// When true, binds wait in `pendingBinds` until `completeBinds()` (a slow bind, for retransmissions).
    var deferBinds = false
    private(set) var pendingBinds: [RelayBindRequest] = []
    private(set) var later: [(ByteBuffer, ClientPath, TimeAmount)] = []
    private(set) var connects: [(connection: PeerTCPConnection, from: SocketHandle, to: TransportAddress)] = []
    private(set) var joins: [(link: StreamLink, connection: PeerTCPConnection)] = []
    private(set) var closedSockets: [SocketHandle] = []
    private(set) var closedPeerConnections: [PeerTCPConnection] = []
    private(set) var boundSockets: [SocketHandle] = []
    /// Requests waiting for the lookup chain, until `completeLookups()`.
    private(set) var pendingLookups: [PendingLookup] = []

    init(shared: TurnShared, clock: TurnClock = TurnClock()) {
        sink = MemoryDatagramSink()
        core = TurnCore(shared: shared, sink: sink, gso: false, clock: clock)
    }

    /// A datagram from a client on `listener`, as a listener hands it to the core.
    func receive(_ bytes: [UInt8], from client: TransportAddress, on listener: SocketHandle) {
        let ft = FiveTuple(client: client, server: listener.localAddress, transport: .udp)
        perform(core.receive(ByteBuffer(bytes: bytes), fiveTuple: ft, path: .datagram(listener, client.socketAddress())))
        core.endOfReadBatch()
    }

    /// A message from a client on a TCP connection.
    func receive(_ bytes: [UInt8], from fiveTuple: FiveTuple, on link: StreamLink) {
        perform(core.receive(ByteBuffer(bytes: bytes), fiveTuple: fiveTuple, path: .stream(link)))
        core.endOfReadBatch()
    }

    /// A datagram from a peer on an allocation's relay socket.
    func receiveFromPeer(_ bytes: [UInt8], from peer: TransportAddress, on socket: SocketHandle) {
        guard let allocation = socket.allocation else { return }
        core.relayFromPeer(allocation, from: peer, ByteBuffer(bytes: bytes))
        core.endOfRelayBatch(allocation)
    }

    func perform(_ actions: [TurnAction]) {
        for action in actions {
            switch action {
            case .send(let bytes, let path):
                path.write(bytes, sink: sink)
            case .sendLater(let bytes, let path, let delay):
                later.append((bytes, path, delay))
            case .bindRelay(let request):
                if deferBinds { pendingBinds.append(request) } else { bind(request) }
            case .connectPeer(let connection, let socket, let peer):
                connects.append((connection, socket, peer))
            case .joinDataConnection(let link, let connection):
                joins.append((link, connection))
            case .close(let socket):
                socket.close()
                closedSockets.append(socket)
            case .closePeerConnection(let connection):
                closedPeerConnections.append(connection)
            case .lookUpCredentials(let pending):
                pendingLookups.append(pending)
            }
        }
    }

    /// Forgets what was recorded (the fuzzer, between inputs).
    func forgetRecords() {
        later = []
        connects = []
        joins = []
        closedSockets = []
        closedPeerConnections = []
        pendingLookups = []
        boundSockets = boundSockets.filter { $0.isOpen }
        _ = sink.take()
    }

    /// Answers the requests waiting for the lookup chain (asking it, as the NIO shell does off its loop).
    func completeLookups() async {
        let waiting = pendingLookups
        pendingLookups = []
        for p in waiting {
            perform(core.credentialsResolved(p, await core.shared.credentials.resolveLookingUp(p.username)))
        }
        core.endOfReadBatch()
    }

    /// Completes the binds held back by `deferBinds`.
    func completeBinds() {
        let binds = pendingBinds
        pendingBinds = []
        for b in binds { bind(b) }
    }

    /// Sends the answers held back by `sendLater`.
    func sendLater() {
        let due = later
        later = []
        for (bytes, path, _) in due { path.write(bytes, sink: sink) }
    }

    private func bind(_ request: RelayBindRequest) {
        if request.holdReservation != nil, reservationsRefused {
            perform(core.relayBindFailed(request.allocation, slot: request.slot, port: request.port, failure: .reservedPortTaken))
            return
        }
        if refusedPorts.contains(request.port) {
            perform(core.relayBindFailed(request.allocation, slot: request.slot, port: request.port,
                                         failure: .portTaken(MemoryShellError.portTaken(request.port))))
            return
        }
        let ip = request.family == .ipv6 ? IPAddress("::1")! : IPAddress(ipv4: 0x7F00_0001)
        let socket = SocketHandle(fd: -1, localAddress: TransportAddress(ip: ip, port: request.port)) {}
        boundSockets.append(socket)
        perform(core.relayBound(request.allocation, slot: request.slot, socket: socket))
    }
}

enum MemoryShellError: Error {
    case portTaken(UInt16)
}
