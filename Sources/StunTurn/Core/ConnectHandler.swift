import NIOCore

/// RFC 6062: TURN allocations that relay TCP. The allocation's relayed address is a listening TCP
/// socket; Connect opens a connection from it to a peer, a peer connecting to it is announced with a
/// ConnectionAttempt indication, and a ConnectionBind on a new client connection joins the two. The
/// core decides and keeps the books; the shell opens, joins and closes the connections.
extension TurnCore {
    /// Peer connections (opened by Connect or accepted from permitted peers) one TCP allocation may have
    /// at once: each may hold `PeerTCPConnection.maxPending` bytes until it is bound, and a permitted peer
    /// could otherwise open them from any number of source ports. Connect beyond → 508; a peer beyond is closed.
    static let maxPeerConnections = 128

    /// RFC 6062 §5.2, receiving a Connect request.
    func handleConnect(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        let start = existingAllocation(m, request)
        guard case .found(let allocation, let integrity) = start else { return start.answer }
        guard let connections = allocation.peerConnections, let peer = m.xorAddress(AttributeType.xorPeerAddress) else {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        if let error = checkPeers([peer], allocation: allocation, byPort: true) {
            return [reply(to: m, request, error: error, integrity: integrity)]
        }
        // §5.2: a connection (or connection attempt) to this peer already exists → 446.
        guard !allocation.hasPeerConnection(to: peer) else {
            return [reply(to: m, request, error: .connectionAlreadyExists, integrity: integrity)]
        }
        guard connections.count < Self.maxPeerConnections else {
            stats.quotaRejections.add()
            return [reply(to: m, request, error: .insufficientCapacity, integrity: integrity)]
        }
        let connection = manager.addPeerConnection(to: allocation, peer: peer)
        connecting[connection.id] = PendingConnect(request: m, info: request, integrity: integrity)
        // The connection leaves from the relayed transport address (§5.2).
        return [.connectPeer(connection, from: allocation.relaySocket, to: peer)]
    }

    /// The shell connected to the peer of a Connect: the client gets the CONNECTION-ID.
    func peerConnected(_ connection: PeerTCPConnection) -> [TurnAction] {
        guard let pending = connecting.removeValue(forKey: connection.id) else { return [.closePeerConnection(connection)] }
        guard let allocation = manager.allocations[connection.allocationFiveTuple],
              allocation.peerConnections?[connection.id] === connection
        else {
            return [.closePeerConnection(connection)]
        }
        allocation.permissions.install(connection.peer.ip, until: clock.now() + .seconds(configuration.permissionLifetime))
        var r = response(to: pending.request)
        r.appendConnectionID(connection.id)
        return [reply(r, to: pending.request, pending.info, integrity: pending.integrity)]
    }

    /// The peer of a Connect could not be reached → 447.
    func peerConnectFailed(_ connection: PeerTCPConnection, error: Error) -> [TurnAction] {
        manager.removePeerConnection(connection)
        guard let pending = connecting.removeValue(forKey: connection.id) else { return [] }
        logger.debug("Connect failed", metadata: ["peer": "\(connection.peer)", "error": "\(error)"])
        return [reply(to: pending.request, pending.info, error: .connectionTimeoutOrFailure, integrity: pending.integrity)]
    }

    /// RFC 6062 §5.3: a peer connected to a TCP allocation's relayed address (`socket`). Without a
    /// permission for its IP it is refused (nil: the shell closes it); otherwise the client hears a
    /// ConnectionAttempt indication.
    func peerAccepted(on socket: SocketHandle, from peer: TransportAddress) -> (PeerTCPConnection?, [TurnAction]) {
        guard let allocation = socket.allocation, manager.allocations[allocation.fiveTuple] === allocation,
              let connections = allocation.peerConnections,
              allocation.permissions.permits(peer.ip, now: clock.now()),
              !allocation.hasPeerConnection(to: peer),
              connections.count < Self.maxPeerConnections
        else {
            stats.unroutableDropped.add()
            return (nil, [])
        }
        let connection = manager.addPeerConnection(to: allocation, peer: peer)
        var indication = StunMessage(method: .connectionAttempt, messageClass: .indication)
        indication.appendXorAddress(AttributeType.xorPeerAddress, peer)
        indication.appendConnectionID(connection.id)
        return (connection, [.send(allocator.buffer(bytes: indication.encode()), to: allocation.clientPath)])
    }

    /// A peer connection ended: forgotten (the shell closes its data connection).
    func peerClosed(_ connection: PeerTCPConnection) {
        connecting[connection.id] = nil
        manager.removePeerConnection(connection)
    }

    /// RFC 6062 §5.4, receiving a ConnectionBind request on a new TCP/TLS connection: authenticated as
    /// the allocation's user, naming a connection not yet bound. After the success response the
    /// connection stops carrying STUN and becomes the byte pipe to the peer.
    func handleConnectionBind(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        guard case .stream(let link) = request.path else {
            return [reply(to: m, request, error: .badRequest, integrity: nil)]
        }
        let auth = authenticate(m, request, existing: nil)
        guard case .authenticated(let integrity, let credential) = auth else { return auth.refusal }
        guard manager.allocations[request.fiveTuple] == nil, let id = m.connectionID,
              let connection = shared.tcpConnections.claim(id) else {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        guard connection.username == credential.username else {
            return [reply(to: m, request, error: .wrongCredentials, integrity: integrity)]
        }
        return [reply(response(to: m), to: m, request, integrity: integrity), .joinDataConnection(link, connection)]
    }
}

/// A Connect waiting for its peer connection: answered when it opens or fails.
struct PendingConnect {
    let request: StunMessage
    let info: RequestInfo
    let integrity: TurnCore.ResponseIntegrity
}
