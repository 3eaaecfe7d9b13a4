/// What one allocation acquired: its place in the quota, its relay ports, its sockets, and (until the
/// allocation exists) the reservation its EVEN-PORT request made. Everything a lease holds is given back
/// in one place, `AllocationManager.release`, exactly once.
final class AllocationLease {
    /// Whom the quota counts (`SessionCredential.quotaOwner`).
    let owner: String
    fileprivate(set) var ports: [UInt16] = []
    fileprivate(set) var sockets: [SocketHandle] = []
    /// A reservation made for this allocation (EVEN-PORT with R), cancelled if the allocation is never
    /// made; once it is, the reservation lives on its own (redeemed by another Allocate or expired).
    fileprivate(set) var reservation: UInt64?
    fileprivate(set) var released = false

    fileprivate init(owner: String) { self.owner = owner }
}

/// An Allocate whose relay socket is being made (RFC 8656 §7.2 past its checks): what it asked for, what
/// it holds so far, and how many more ports it may try.
final class PendingAllocation {
    let id: UInt64
    let request: StunMessage
    let info: RequestInfo
    let integrity: TurnCore.ResponseIntegrity
    let credential: SessionCredential
    let lease: AllocationLease
    let lifetime: UInt32
    let tcp: Bool
    let dontFragment: Bool
    let evenPort: (present: Bool, reserveNext: Bool)
    var family: AddressFamily
    /// The port being bound, and the token of the port reserved next to it (EVEN-PORT with R).
    var port: UInt16 = 0
    var reservedToken: UInt64?
    /// The port came from a RESERVATION-TOKEN (or reserves one): it must be this port, no other.
    var fixedPort = false
    /// Ports the OS refused; further ports the core may try after a refusal; fresh EVEN-PORT pairs it
    /// may try after a reserved port could not be held.
    var refused: Set<UInt16> = []
    var attemptsLeft = 8
    var pairsLeft = 4
    /// ADDITIONAL-ADDRESS-FAMILY: an IPv6 relay is wanted next to the IPv4 one; or it was refused (440).
    var wantsAdditional = false
    var refusedAdditional = false
    var additionalAttemptsLeft = 8
    var primary: SocketHandle?

    init(id: UInt64, request: StunMessage, info: RequestInfo, integrity: TurnCore.ResponseIntegrity, credential: SessionCredential,
         lease: AllocationLease, lifetime: UInt32, tcp: Bool, dontFragment: Bool, evenPort: (present: Bool, reserveNext: Bool),
         family: AddressFamily) {
        self.id = id
        self.request = request
        self.info = info
        self.integrity = integrity
        self.credential = credential
        self.lease = lease
        self.lifetime = lifetime
        self.tcp = tcp
        self.dontFragment = dontFragment
        self.evenPort = evenPort
        self.family = family
    }
}

/// Owns one event loop's allocations and everything they acquire: quota, relay ports, reservations,
/// sockets and RFC 6062 peer connections, handed out as leases. The relay path reads `allocations`;
/// only this type changes it, and only `release` gives anything back.
final class AllocationManager {
    private let shared: TurnShared
    private(set) var allocations: [FiveTuple: Allocation] = [:]
    private var pending: [UInt64: PendingAllocation] = [:]
    private var pendingByFiveTuple: [FiveTuple: UInt64] = [:]
    private var nextPendingID: UInt64 = 1

    init(shared: TurnShared) { self.shared = shared }

    var pendingCount: Int { pending.count }

    // MARK: Leases

    /// A lease counted against `owner`'s quota (RFC 8656 §7.2 steps 8-9), or the quota's error.
    func lease(for owner: String) -> Result<AllocationLease, StunError> {
        if let error = shared.quota.acquire(user: owner) {
            shared.stats.quotaRejections.add()
            return .failure(error)
        }
        return .success(AllocationLease(owner: owner))
    }

    /// A free relay port for `lease` (EVEN-PORT: even, optionally reserving the next one under a token).
    func takePort(for lease: AllocationLease, even: Bool = false, reserveNext: Bool = false, excluding: Set<UInt16> = [],
                  ipv6: Bool) -> (port: UInt16, token: UInt64?)? {
        guard let p = shared.portPool.acquire(even: even, reserveNext: reserveNext, excluding: excluding, ipv6: ipv6) else { return nil }
        lease.ports.append(p.port)
        if let token = p.token { lease.reservation = token }
        return p
    }

    /// The port reserved under `token`, now `lease`'s: its number, family and the socket holding it.
    func redeem(_ token: UInt64, for lease: AllocationLease) -> (port: UInt16, ipv6: Bool, socket: CInt?)? {
        guard let r = shared.portPool.redeemReservation(token: token) else { return nil }
        lease.ports.append(r.port)
        return r
    }

    /// A port the OS refused to bind goes back to the pool (it stays refused for this request).
    func givePortBack(_ port: UInt16, from lease: AllocationLease) {
        guard let i = lease.ports.firstIndex(of: port) else { return }
        lease.ports.remove(at: i)
        shared.portPool.release(port)
    }

    /// The reservation `lease` made could not be held: it is cancelled (its port is free again).
    func cancelReservation(of lease: AllocationLease) {
        guard let token = lease.reservation else { return }
        lease.reservation = nil
        shared.portPool.cancel(token: token)
    }

    func adopt(_ socket: SocketHandle, into lease: AllocationLease) { lease.sockets.append(socket) }

    // MARK: Pending allocations

    func pendingID(for fiveTuple: FiveTuple) -> UInt64? { pendingByFiveTuple[fiveTuple] }

    func startPending(_ make: (UInt64) -> PendingAllocation) -> PendingAllocation {
        let id = nextPendingID
        nextPendingID += 1
        let p = make(id)
        pending[id] = p
        pendingByFiveTuple[p.info.fiveTuple] = id
        return p
    }

    func pending(_ id: UInt64) -> PendingAllocation? { pending[id] }

    /// The client's connection closed while its allocation was being made: abandoned (the socket still
    /// being bound is closed when it comes).
    func cancelPending(_ fiveTuple: FiveTuple) -> [TurnAction] {
        guard let id = pendingByFiveTuple[fiveTuple], let p = pending[id] else { return [] }
        return abandon(p)
    }

    /// A pending allocation that will not be made: its lease is released.
    func abandon(_ p: PendingAllocation) -> [TurnAction] {
        forget(p)
        return release(p.lease)
    }

    /// The allocation exists: it is kept and its sockets relay for it. The lease's reservation now
    /// lives on its own.
    func register(_ allocation: Allocation, from p: PendingAllocation) {
        forget(p)
        allocation.lease.reservation = nil
        allocations[allocation.fiveTuple] = allocation
        allocation.relaySocket.allocation = allocation
        allocation.additional?.socket.allocation = allocation
        shared.stats.allocationsCreated.add()
        shared.stats.allocationsActive.add()
    }

    private func forget(_ p: PendingAllocation) {
        pending[p.id] = nil
        if pendingByFiveTuple[p.info.fiveTuple] == p.id { pendingByFiveTuple[p.info.fiveTuple] = nil }
    }

    // MARK: Peer connections (RFC 6062)

    /// A new peer connection of TCP allocation `allocation`, with a CONNECTION-ID unique across loops.
    func addPeerConnection(to allocation: Allocation, peer: TransportAddress) -> PeerTCPConnection {
        let c = shared.tcpConnections.register {
            PeerTCPConnection(id: $0, peer: peer, username: allocation.credential.username, allocation: allocation.fiveTuple)
        }
        allocation.peerConnections?[c.id] = c
        return c
    }

    /// A peer connection ended (or never opened): forgotten by its allocation and the registry.
    func removePeerConnection(_ c: PeerTCPConnection) {
        shared.tcpConnections.remove(c.id)
        allocations[c.allocationFiveTuple]?.peerConnections?.removeValue(forKey: c.id)
    }

    // MARK: Ending

    /// Ends an allocation: forgotten, its peer connections closed, its lease released.
    func end(_ allocation: Allocation) -> [TurnAction] {
        guard allocations[allocation.fiveTuple] === allocation else { return [] }
        allocations.removeValue(forKey: allocation.fiveTuple)
        shared.stats.allocationsActive.subtract()
        var actions: [TurnAction] = []
        for c in (allocation.peerConnections ?? [:]).values {
            shared.tcpConnections.remove(c.id)
            actions.append(.closePeerConnection(c))
        }
        allocation.peerConnections = allocation.peerConnections.map { _ in [:] }
        return actions + release(allocation.lease)
    }

    /// The one place a lease gives back what it holds: sockets (closed by the shell), an unredeemed
    /// reservation, relay ports, the quota.
    private func release(_ lease: AllocationLease) -> [TurnAction] {
        guard !lease.released else { return [] }
        lease.released = true
        let actions = lease.sockets.map { socket -> TurnAction in
            socket.allocation = nil
            return .close(socket)
        }
        if let token = lease.reservation { shared.portPool.cancel(token: token) }
        for port in lease.ports { shared.portPool.release(port) }
        shared.quota.release(user: lease.owner)
        lease.sockets = []
        lease.ports = []
        lease.reservation = nil
        return actions
    }
}
