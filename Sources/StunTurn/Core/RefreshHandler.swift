import NIOCore

extension TurnCore {
    /// RFC 8656 §7.3-7.4 (server side of Refresh): LIFETIME 0 deletes the allocation, anything else
    /// sets a new lifetime; no allocation on this 5-tuple → 437.
    func handleRefresh(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        let start = existingAllocation(m, request)
        guard case .found(let allocation, let integrity) = start else { return start.answer }
        // RFC 8656 §7.3: REQUESTED-ADDRESS-FAMILY must match the allocation's family → 443.
        if let family = m.requestedAddressFamily, family != (allocation.relayedAddress.ip.isIPv6 ? .ipv6 : .ipv4) {
            return [reply(to: m, request, error: .peerAddressFamilyMismatch, integrity: integrity)]
        }
        var r = response(to: m)
        var actions: [TurnAction] = []
        if m.lifetime == 0 {
            actions = end(allocation, reason: "refresh with lifetime 0")
            r.appendLifetime(0)
        } else {
            let lifetime = grantedLifetime(m.lifetime)
            allocation.expires = clock.now() + .seconds(Int64(lifetime))
            r.appendLifetime(lifetime)
        }
        return [reply(r, to: m, request, integrity: integrity)] + actions
    }
}
