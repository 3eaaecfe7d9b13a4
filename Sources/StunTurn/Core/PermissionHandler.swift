import NIOCore

extension TurnCore {
    /// RFC 8656 §10.2, receiving a CreatePermission request: one or more XOR-PEER-ADDRESS; every one
    /// must pass the peer policy (403) and match the relay's family (443), or none is installed.
    func handleCreatePermission(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        let start = existingAllocation(m, request)
        guard case .found(let allocation, let integrity) = start else { return start.answer }
        guard let peers = m.xorPeerAddresses, !peers.isEmpty else {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        // Permissions are by IP (§9): the port of each XOR-PEER-ADDRESS is not part of the check.
        if let error = checkPeers(peers, allocation: allocation, byPort: false) {
            return [reply(to: m, request, error: error, integrity: integrity)]
        }
        let newOnes = Set(peers.map(\.ip)).filter { !allocation.permissions.contains($0) }
        if allocation.permissions.count + newOnes.count > limits.maxPermissionsPerAllocation {
            stats.quotaRejections.add()
            return [reply(to: m, request, error: .insufficientCapacity, integrity: integrity)]
        }
        let until = clock.now() + .seconds(configuration.permissionLifetime)
        for p in peers { allocation.permissions.install(p.ip, until: until) }
        return [reply(response(to: m), to: m, request, integrity: integrity)]
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
