import NIOCore

extension TurnEngine {
    /// RFC 8656 §7.3-7.4 (server side of Refresh): LIFETIME 0 deletes the allocation, anything else
    /// sets a new lifetime; no allocation on this 5-tuple → 437.
    func handleRefresh(_ m: StunMessage, _ context: RequestContext) {
        let allocation = allocations[context.fiveTuple]
        guard let (integrity, _) = authenticate(m, context, existing: allocation) else { return }
        guard let allocation else {
            respond(to: m, context, error: .allocationMismatch, integrity: integrity)
            return
        }
        // RFC 8656 §7.3: REQUESTED-ADDRESS-FAMILY must match the allocation's family → 443.
        if let family = m.requestedAddressFamily, family != (allocation.relayedAddress.ip.isIPv6 ? .ipv6 : .ipv4) {
            respond(to: m, context, error: .peerAddressFamilyMismatch, integrity: integrity)
            return
        }
        var r = makeResponse(to: m, error: nil)
        if m.lifetime == 0 {
            delete(allocation, reason: "refresh with lifetime 0")
            r.appendLifetime(0)
        } else {
            let lifetime = grantedLifetime(m.lifetime)
            allocation.expires = .now() + .seconds(Int64(lifetime))
            r.appendLifetime(lifetime)
        }
        _ = send(r, for: m, context, integrity: integrity)
    }
}
