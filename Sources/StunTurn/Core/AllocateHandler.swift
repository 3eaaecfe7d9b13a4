import NIOCore

extension TurnCore {
    /// RFC 8656 §7.2, receiving an Allocate request: the checks in the RFC's order, then a lease and a
    /// port, and the relay socket is asked for (`TurnAction.bindRelay`); the answer goes out when the
    /// shell reports the socket (`relayBound`) or its failure (`relayBindFailed`).
    func handleAllocate(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        let ft = request.fiveTuple
        let existing = manager.allocations[ft]
        // A retransmission that arrives while the relay socket is still being bound: the answer is on its way.
        if existing == nil, manager.pendingID(for: ft) != nil { return [] }
        let auth = authenticate(m, request, existing: existing)
        guard case .authenticated(let integrity, let credential) = auth else { return auth.refusal }

        // Step 2: the 5-tuple already has an allocation. A retransmission of the request that created
        // it gets the same success response again; anything else is 437.
        if let existing {
            if existing.allocateTransaction == m.transactionID, let answer = existing.allocateResponse {
                return [.send(answer, to: request.path)]
            }
            return [reply(to: m, request, error: .allocationMismatch, integrity: integrity)]
        }
        // A server shutting down keeps the allocations it has and makes no new ones.
        if shared.isDraining {
            return [reply(to: m, request, error: .serverShuttingDown, integrity: integrity)]
        }
        // Step 3: REQUESTED-TRANSPORT must be present: UDP, or TCP (RFC 6062) over a stream.
        guard let requested = m.requestedTransport else {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        guard let transport = RelayTransport(rawValue: requested) else {
            return [reply(to: m, request, error: .unsupportedTransport, integrity: integrity)]
        }
        // RFC 6062 §5.1: TCP relaying is asked for over TCP/TLS only, and without the UDP-only attributes.
        let tcp = transport == .tcp
        if tcp, !request.path.isStream || m.dontFragment || m.has(AttributeType.evenPort) || m.has(AttributeType.reservationToken) {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        // Step 5: EVEN-PORT and RESERVATION-TOKEN together are a bad request; so is
        // RESERVATION-TOKEN with REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.2).
        let evenPort = m.evenPort
        let hasToken = m.has(AttributeType.reservationToken)
        if hasToken, evenPort.present || m.has(AttributeType.requestedAddressFamily) {
            return [reply(to: m, request, error: .badRequest, integrity: integrity)]
        }
        // RFC 6156 §4.2 / RFC 8656 §7.2 step 4: the relayed address family, IPv4 unless asked otherwise;
        // IPv6 only where this host has an IPv6 relay address (else 440).
        var family = AddressFamily.ipv4
        if let asked = m.requestedAddressFamily {
            guard let asked, asked == .ipv4 || shared.relayedIP6 != nil else {
                return [reply(to: m, request, error: .addressFamilyNotSupported, integrity: integrity)]
            }
            family = asked
        }
        // RFC 8656 §7.2: ADDITIONAL-ADDRESS-FAMILY asks for a second (IPv6) relay next to the IPv4 one: a
        // dual allocation. It may not come with REQUESTED-ADDRESS-FAMILY, and only IPv6 is a valid value
        // (400 otherwise). Where the IPv6 half cannot be had (no IPv6 relay address, a TCP allocation) the
        // IPv4 allocation is still made and ADDRESS-ERROR-CODE 440 says so (§18.12).
        var wantsAdditional = false, refusedAdditional = false
        if let additional = m.additionalAddressFamily {
            guard m.requestedAddressFamily == nil, additional == .ipv6 else {
                return [reply(to: m, request, error: .badRequest, integrity: integrity)]
            }
            if shared.relayedIP6 == nil || tcp { refusedAdditional = true } else { wantsAdditional = true }
        }
        // Steps 8-9: quotas.
        let lease: AllocationLease
        switch manager.lease(for: credential.quotaOwner) {
        case .failure(let error): return [reply(to: m, request, error: error, integrity: integrity)]
        case .success(let l): lease = l
        }
        let p = manager.startPending {
            PendingAllocation(id: $0, request: m, info: request, integrity: integrity, credential: credential, lease: lease,
                              lifetime: grantedLifetime(m.lifetime), tcp: tcp, dontFragment: m.dontFragment,
                              evenPort: evenPort, family: family)
        }
        p.wantsAdditional = wantsAdditional
        p.refusedAdditional = refusedAdditional
        if hasToken {
            // Step 6: a token that is not valid → 508. The reserved port is the port the client must get,
            // bound on the socket that has held it, in the family of the allocation that reserved it.
            guard let token = m.reservationToken, let reserved = manager.redeem(token, for: lease) else {
                return fail(p)
            }
            p.port = reserved.port
            p.fixedPort = true
            if reserved.ipv6 { p.family = .ipv6 }
            return [.bindRelay(bindRequest(p, heldSocket: reserved.socket))]
        }
        return nextPort(p)
    }

    /// Takes a port (a fresh EVEN-PORT pair when asked) and asks for its socket; 508 when none is left.
    private func nextPort(_ p: PendingAllocation) -> [TurnAction] {
        guard let taken = manager.takePort(for: p.lease, even: p.evenPort.present, reserveNext: p.evenPort.reserveNext,
                                           excluding: p.refused, ipv6: p.family == .ipv6) else {
            return fail(p)
        }
        p.port = taken.port
        p.reservedToken = taken.token
        // A port reserved under a token must be the one the client gets: no other port is tried for it.
        p.fixedPort = taken.token != nil
        return [.bindRelay(bindRequest(p, heldSocket: nil))]
    }

    private func bindRequest(_ p: PendingAllocation, heldSocket: CInt?) -> RelayBindRequest {
        RelayBindRequest(allocation: p.id, slot: .primary, port: p.port, family: p.family, tcp: p.tcp, dontFragment: p.dontFragment,
                         heldSocket: heldSocket, holdReservation: p.reservedToken)
    }

    /// 508 for a pending allocation that cannot be made; its lease is released.
    private func fail(_ p: PendingAllocation) -> [TurnAction] {
        [reply(to: p.request, p.info, error: .insufficientCapacity, integrity: p.integrity)] + manager.abandon(p)
    }

    /// The shell made a relay socket for pending allocation `id`.
    func relayBound(_ id: UInt64, slot: RelayBindRequest.Slot, socket: SocketHandle) -> [TurnAction] {
        guard let p = manager.pending(id) else { return [.close(socket)] }  // its client went away meanwhile
        manager.adopt(socket, into: p.lease)
        switch slot {
        case .primary:
            p.primary = socket
            guard p.wantsAdditional else { return complete(p, additional: nil) }
            return nextAdditionalPort(p)
        case .additional:
            return complete(p, additional: socket)
        }
    }

    /// The shell could not make the socket: another port, a fresh pair, or 508.
    func relayBindFailed(_ id: UInt64, slot: RelayBindRequest.Slot, port: UInt16, failure: RelayBindFailure) -> [TurnAction] {
        guard let p = manager.pending(id) else { return [] }
        logger.debug("relay port refused", metadata: ["port": "\(port)", "error": "\(failure)"])
        manager.givePortBack(port, from: p.lease)
        p.refused.insert(port)
        switch slot {
        case .additional:
            // Without the IPv6 half the IPv4 allocation still stands (§7.2), with ADDRESS-ERROR-CODE 508.
            p.additionalAttemptsLeft -= 1
            return p.additionalAttemptsLeft > 0 ? nextAdditionalPort(p) : complete(p, additional: nil)
        case .primary:
            if p.reservedToken != nil {
                // The pair's reserved port (or the even one) is taken: give the pair back, try another.
                manager.cancelReservation(of: p.lease)
                p.reservedToken = nil
                p.refused.insert(port &+ 1)
                p.pairsLeft -= 1
                if case .reservedPortTaken = failure {} else { logger.warning("no relay port could be bound", metadata: ["error": "\(failure)"]) }
                return p.pairsLeft > 0 ? nextPort(p) : fail(p)
            }
            p.attemptsLeft -= 1
            guard !p.fixedPort, !p.tcp, p.attemptsLeft > 0 else {
                logger.warning("no relay port could be bound", metadata: ["error": "\(failure)"])
                return fail(p)
            }
            return nextPort(p)
        }
    }

    /// The IPv6 half of a dual allocation: another port, an IPv6 relay socket.
    private func nextAdditionalPort(_ p: PendingAllocation) -> [TurnAction] {
        guard let taken = manager.takePort(for: p.lease, excluding: p.refused, ipv6: true) else {
            return complete(p, additional: nil)
        }
        return [.bindRelay(RelayBindRequest(allocation: p.id, slot: .additional, port: taken.port, family: .ipv6, tcp: false,
                                            dontFragment: false, heldSocket: nil, holdReservation: nil))]
    }

    /// The allocation exists: kept, counted, and answered with its addresses (§7.2 step 8).
    private func complete(_ p: PendingAllocation, additional: SocketHandle?) -> [TurnAction] {
        guard let primary = p.primary else { return fail(p) }
        let relayedIP = p.family == .ipv6 ? shared.relayedIP6 ?? shared.relayedIP : shared.relayedIP
        let allocation = Allocation(
            fiveTuple: p.info.fiveTuple, credential: p.credential,
            relayedAddress: TransportAddress(ip: relayedIP, port: primary.localAddress.port), relaySocket: primary,
            additional: additional.map { AdditionalRelay(socket: $0, relayedAddress: TransportAddress(ip: shared.relayedIP6!, port: $0.localAddress.port)) },
            tcp: p.tcp, clientPath: p.info.path, lease: p.lease, expires: clock.now() + .seconds(Int64(p.lifetime)),
            allocateTransaction: p.request.transactionID)
        manager.register(allocation, from: p)
        var r = response(to: p.request)
        r.appendXorAddress(AttributeType.xorRelayedAddress, allocation.relayedAddress)
        if let additional = allocation.additional {
            r.appendXorAddress(AttributeType.xorRelayedAddress, additional.relayedAddress)
        }
        r.appendLifetime(p.lifetime)
        if let token = p.reservedToken { r.appendReservationToken(token) }
        if p.refusedAdditional {
            r.appendAddressErrorCode(family: .ipv6, error: .addressFamilyNotSupported)
        } else if p.wantsAdditional, additional == nil {
            r.appendAddressErrorCode(family: .ipv6, error: .insufficientCapacity)
        }
        r.appendXorAddress(AttributeType.xorMappedAddress, p.info.client)
        let answer = encode(r, for: p.request, integrity: p.integrity)
        allocation.allocateResponse = answer
        logger.debug("allocation created", metadata: [
            "five-tuple": "\(allocation.fiveTuple)", "relayed": "\(allocation.relayedAddress)",
            "user": "\(allocation.credential.username)", "transport": "\(p.tcp ? "tcp" : "udp")",
        ])
        return [.send(answer, to: p.info.path)]
    }
}

/// REQUESTED-TRANSPORT values (RFC 8656 §18.11: an IANA protocol number): UDP, or TCP (RFC 6062).
enum RelayTransport: UInt8 {
    case tcp = 6
    case udp = 17
}
