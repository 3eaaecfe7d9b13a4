import NIOCore

extension TurnCore {
    /// RFC 8656 §12.2-12.3, receiving a ChannelBind request: CHANNEL-NUMBER in 0x4000-0x4FFF (or RFC 5766's
    /// 0x4000-0x7FFF, see `TurnConfiguration.channelNumbers`) and one XOR-PEER-ADDRESS; the rebinding
    /// rules live in ChannelBindingTable. A binding also installs or refreshes the permission for the
    /// peer's IP.
    func handleChannelBind(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        let start = existingAllocation(m, request)
        guard case .found(let allocation, let integrity) = start else { return start.answer }
        // Channels are for UDP relaying; a TCP allocation (RFC 6062) has none.
        guard !allocation.isTCP, let number = m.channelNumber, configuration.channelNumbers.contains(number),
              let peers = m.xorPeerAddresses, peers.count == 1
        else {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        let peer = peers[0]
        if let error = checkPeers([peer], allocation: allocation, byPort: true) {
            return [reply(to: m, request, error: error, integrity: integrity)]
        }
        // A new permission or binding past the allocation's cap → 508.
        let newPermissionOverCap = !allocation.permissions.contains(peer.ip)
            && allocation.permissions.count >= limits.maxPermissionsPerAllocation
        let newChannelOverCap = !allocation.channels.has(number) && allocation.channels.count >= limits.maxChannelsPerAllocation
        if newPermissionOverCap || newChannelOverCap {
            stats.quotaRejections.add()
            return [reply(to: m, request, error: .insufficientCapacity, integrity: integrity)]
        }
        let now = clock.now()
        if let error = allocation.channels.bind(number, to: peer, socketAddress: peer.socketAddress(),
                                                until: now + .seconds(configuration.channelLifetime), now: now) {
            return [reply(to: m, request, error: error, integrity: integrity)]
        }
        allocation.permissions.install(peer.ip, until: now + .seconds(configuration.permissionLifetime))
        return [reply(response(to: m), to: m, request, integrity: integrity)]
    }
}
