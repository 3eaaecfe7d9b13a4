import NIOCore

extension TurnEngine {
    /// RFC 8656 §12.2-12.3, receiving a ChannelBind request: CHANNEL-NUMBER in 0x4000-0x4FFF (or RFC 5766's
    /// 0x4000-0x7FFF, see `TurnConfiguration.channelNumbers`) and one
    /// XOR-PEER-ADDRESS; the rebinding rules live in ChannelBindingTable. A binding also installs or
    /// refreshes the permission for the peer's IP.
    func handleChannelBind(_ m: StunMessage, _ context: RequestContext) {
        let allocation = allocations[context.fiveTuple]
        guard let (integrity, _) = authenticate(m, context, existing: allocation) else { return }
        guard let allocation else {
            respond(to: m, context, error: .allocationMismatch, integrity: integrity)
            return
        }
        // Channels are for UDP relaying; a TCP allocation (RFC 6062) has none.
        guard allocation.tcpListener == nil else {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        guard let number = m.channelNumber, configuration.channelNumbers.contains(number),
              let peers = m.xorPeerAddresses, peers.count == 1
        else {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        let peer = peers[0]
        if let error = checkPeers([peer], allocation: allocation, byPort: true) {
            respond(to: m, context, error: error, integrity: integrity)
            return
        }
        if !allocation.permissions.contains(peer.ip),
           allocation.permissions.count >= limits.maxPermissionsPerAllocation {
            stats.quotaRejections.add()
            respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
            return
        }
        // A new binding past the allocation's cap is refused like a permission past its cap.
        if !allocation.channels.has(number),
           allocation.channels.count >= limits.maxChannelsPerAllocation {
            stats.quotaRejections.add()
            respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
            return
        }
        let now = NIODeadline.now()
        if let error = allocation.channels.bind(
            number, to: peer, socketAddress: peer.socketAddress(),
            until: now + .seconds(configuration.channelLifetime), now: now)
        {
            respond(to: m, context, error: error, integrity: integrity)
            return
        }
        allocation.permissions.install(peer.ip, until: now + .seconds(configuration.permissionLifetime))
        _ = send(makeResponse(to: m, error: nil), for: m, context, integrity: integrity)
    }
}
