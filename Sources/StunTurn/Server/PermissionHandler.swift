import NIOCore

extension TurnEngine {
    /// RFC 8656 §10.2, receiving a CreatePermission request: one or more XOR-PEER-ADDRESS; every one
    /// must pass the peer policy (403) and match the relay's family (443), or none is installed.
    func handleCreatePermission(_ m: StunMessage, _ context: RequestContext) {
        let allocation = allocations[context.fiveTuple]
        guard let (integrity, _) = authenticate(m, context, existing: allocation) else { return }
        guard let allocation else {
            respond(to: m, context, error: .allocationMismatch, integrity: integrity)
            return
        }
        guard let peers = m.xorPeerAddresses, !peers.isEmpty else {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        // Permissions are by IP (§9): the port of each XOR-PEER-ADDRESS is not part of the check.
        if let error = checkPeers(peers, allocation: allocation, byPort: false) {
            respond(to: m, context, error: error, integrity: integrity)
            return
        }
        let newOnes = Set(peers.map(\.ip)).filter { !allocation.permissions.contains($0) }
        if allocation.permissions.count + newOnes.count > limits.maxPermissionsPerAllocation {
            stats.quotaRejections.add()
            respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
            return
        }
        let until = NIODeadline.now() + .seconds(configuration.permissionLifetime)
        for p in peers { allocation.permissions.install(p.ip, until: until) }
        _ = send(makeResponse(to: m, error: nil), for: m, context, integrity: integrity)
    }

    /// Peer policy (403) and family (443) for addresses a client wants to reach. `byPort`: judge each
    /// peer with its port (a channel binding, a Connect), which matters for this host's own addresses.
    func checkPeers(_ peers: [TransportAddress], allocation: Allocation, byPort: Bool) -> StunError? {
        // Policy first, so that e.g. ::ffff:127.0.0.1 is refused as what it is (403), not as a family mismatch.
        let policy = limits.peerPolicy
        for peer in peers where byPort ? !policy.permits(peer) : !policy.permits(peer.ip) {
            stats.peerPolicyRejections.add()
            logger.info("peer address refused by policy", metadata: [
                "peer": "\(byPort ? "\(peer)" : "\(peer.ip)")", "user": "\(allocation.credential.username)",
            ])
            return .forbidden
        }
        for peer in peers where !allocation.relays(familyOf: peer.ip) {
            return .peerAddressFamilyMismatch
        }
        return nil
    }
}
