import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

extension TurnEngine {
    /// RFC 8656 §7.2, receiving an Allocate request. `retriesLeft`: when the port pair reserved for an
    /// EVEN-PORT request cannot be bound (another socket holds a port of the range), the request is
    /// handled again with a fresh pair and token — the client has not seen the first token.
    func handleAllocate(_ m: StunMessage, _ context: RequestContext, retriesLeft: Int = 4, avoiding: Set<UInt16> = []) {
        let ft = context.fiveTuple
        let existing = allocations[ft]
        // A retransmission that arrives while the relay socket is still being bound: the answer is on its way.
        if existing == nil, pendingAllocations.contains(ft) { return }
        guard let (integrity, credential) = authenticate(m, context, existing: existing) else { return }

        // Step 2: the 5-tuple already has an allocation. A retransmission of the request that created
        // it gets the same success response again; anything else is 437.
        if let existing {
            if existing.allocateTransaction == m.transactionID {
                context.path.write(context.path.channel.allocator.buffer(bytes: existing.allocateResponse))
            } else {
                respond(to: m, context, error: .allocationMismatch, integrity: integrity)
            }
            return
        }
        // A server shutting down keeps the allocations it has and makes no new ones.
        if shared.isDraining {
            respond(to: m, context, error: StunError(508, "Server Shutting Down"), integrity: integrity)
            return
        }
        // Step 3: REQUESTED-TRANSPORT must be present: UDP, or TCP (RFC 6062) over a stream.
        guard let transport = m.requestedTransport else {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        // RFC 6062 §5.1: TCP relaying is asked for over TCP/TLS only, and without the UDP-only attributes.
        let tcpRelay = transport == 6
        guard transport == 17 || tcpRelay else {
            respond(to: m, context, error: .unsupportedTransport, integrity: integrity)
            return
        }
        if tcpRelay, !context.path.isStream || m.dontFragment || m.has(AttributeType.evenPort) || m.has(AttributeType.reservationToken) {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        // Step 5: EVEN-PORT and RESERVATION-TOKEN together are a bad request; so is
        // RESERVATION-TOKEN with REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.2).
        let evenPort = m.evenPort
        let token = m.reservationToken
        if m.has(AttributeType.reservationToken), evenPort.present || m.has(AttributeType.requestedAddressFamily) {
            respond(to: m, context, error: .badRequest, integrity: integrity)
            return
        }
        // RFC 6156 §4.2 / RFC 8656 §7.2 step 4: the relayed address family, IPv4 unless asked otherwise;
        // IPv6 only where this host has an IPv6 relay address (else 440).
        var family = AddressFamily.ipv4
        if let requested = m.requestedAddressFamily {
            guard let requested else {
                respond(to: m, context, error: .addressFamilyNotSupported, integrity: integrity)
                return
            }
            if requested == .ipv6, shared.relayedIP6 == nil {
                respond(to: m, context, error: .addressFamilyNotSupported, integrity: integrity)
                return
            }
            family = requested
        }
        // RFC 8656 §7.2: ADDITIONAL-ADDRESS-FAMILY asks for a second (IPv6) relay next to the IPv4 one: a
        // dual allocation. It may not come with REQUESTED-ADDRESS-FAMILY, and only IPv6 is a valid value
        // (400 otherwise). Where the IPv6 half cannot be had (no IPv6 relay address, a TCP allocation) the
        // IPv4 allocation is still made and ADDRESS-ERROR-CODE 440 says so (§18.12).
        var wantsAdditional = false
        var refusedAdditional = false
        if let additional = m.additionalAddressFamily {
            guard m.requestedAddressFamily == nil, additional == .ipv6 else {
                respond(to: m, context, error: .badRequest, integrity: integrity)
                return
            }
            if shared.relayedIP6 == nil || m.requestedTransport == 6 { refusedAdditional = true } else { wantsAdditional = true }
        }
        // Steps 8-9: quotas.
        if let quotaError = shared.quota.acquire(user: credential.quotaOwner) {
            stats.quotaRejections.add()
            respond(to: m, context, error: quotaError, integrity: integrity)
            return
        }
        let port: UInt16
        var reservedToken: UInt64?
        var heldSocket: CInt?
        if m.has(AttributeType.reservationToken) {
            // Step 6: a token that is not valid → 508.
            guard let t = token, let reserved = shared.portPool.redeemReservation(token: t) else {
                shared.quota.release(user: credential.quotaOwner)
                respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
                return
            }
            port = reserved.port
            heldSocket = reserved.socket
            // The reserved port belongs to the family of the allocation that reserved it.
            if reserved.ipv6 { family = .ipv6 }
        } else {
            guard let p = shared.portPool.acquire(even: evenPort.present, reserveNext: evenPort.reserveNext, excluding: avoiding,
                                                  ipv6: family == .ipv6) else {
                shared.quota.release(user: credential.quotaOwner)
                respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
                return
            }
            port = p.port
            reservedToken = p.token
            // The reserved (odd) port is held by a socket from now on; if another socket on the host has
            // it already, this pair is given back and the request handled again with another.
            if let t = p.token, !shared.portPool.hold(token: t, host: configuration.relayBindAddress(family)) {
                shared.portPool.cancel(token: t)
                shared.portPool.release(port)
                shared.quota.release(user: credential.quotaOwner)
                if retriesLeft > 0 {
                    handleAllocate(m, context, retriesLeft: retriesLeft - 1, avoiding: avoiding.union([port, port &+ 1]))
                } else {
                    respond(to: m, context, error: .insufficientCapacity, integrity: integrity)
                }
                return
            }
        }
        let lifetime = grantedLifetime(m.lifetime)
        pendingAllocations.insert(ft)
        // A port reserved under a token (or redeemed from one) is the port the client must get: no
        // second try on another port then, or the token would point at the wrong one.
        let attempts = reservedToken == nil && !m.has(AttributeType.reservationToken) ? 8 : 1
        if tcpRelay {
            let listener = TCPRelayListener()
            bindTCPRelay(port: port, family: family, box: listener) { [self] result in
                pendingAllocations.remove(ft)
                switch result {
                case .failure(let error):
                    logger.warning("no TCP relay port could be bound", metadata: ["error": "\(error)"])
                    shared.portPool.release(port)
                    shared.quota.release(user: credential.quotaOwner)
                    respond(to: m, context, error: .insufficientCapacity, integrity: integrity, flush: true)
                case .success(let channel):
                    let allocation = newAllocation(m, context, credential, family: family, port: port,
                                                   socket: WritableSocket(channel: channel, fd: -1, writer: writer), lifetime: lifetime)
                    allocation.tcpListener = listener
                    listener.allocation = allocation
                    registerAllocation(allocation, request: m, context, integrity: integrity, lifetime: lifetime)
                }
            }
            return
        }
        bindRelay(port: port, family: family, attemptsLeft: attempts, refused: [], even: evenPort.present, dontFragment: m.dontFragment,
                  heldSocket: heldSocket) {
            [self] result in
            pendingAllocations.remove(ft)
            switch result {
            case .failure(let error):
                logger.warning("no relay port could be bound", metadata: ["error": "\(error)"])
                if let reservedToken { shared.portPool.cancel(token: reservedToken) }
                shared.quota.release(user: credential.quotaOwner)
                if reservedToken != nil, retriesLeft > 0 {
                    handleAllocate(m, context, retriesLeft: retriesLeft - 1, avoiding: avoiding.union([port, port &+ 1]))
                    return
                }
                respond(to: m, context, error: .insufficientCapacity, integrity: integrity, flush: true)
            case .success(let (socket, boundPort)):
                let allocation = newAllocation(m, context, credential, family: family, port: boundPort, socket: socket, lifetime: lifetime)
                allocation.reservedToken = reservedToken
                try? socket.channel.pipeline.syncOperations.handler(type: RelaySocketHandler.self).allocation = allocation
                guard wantsAdditional else {
                    registerAllocation(allocation, request: m, context, integrity: integrity, lifetime: lifetime,
                                       reservedToken: reservedToken, refusedAdditional: refusedAdditional)
                    return
                }
                addIPv6Relay(to: allocation) { [self] added in
                    // Without the IPv6 half (no port, bind failed) the IPv4 allocation still stands (§7.2).
                    registerAllocation(allocation, request: m, context, integrity: integrity, lifetime: lifetime,
                                       reservedToken: reservedToken, additionalError: added ? nil : 508)
                }
            }
        }
    }

    func newAllocation(_ m: StunMessage, _ context: RequestContext, _ credential: SessionCredential, family: AddressFamily,
                       port: UInt16, socket: WritableSocket, lifetime: UInt32) -> Allocation {
        Allocation(fiveTuple: context.fiveTuple, credential: credential,
                   relayedAddress: TransportAddress(ip: family == .ipv6 ? shared.relayedIP6! : shared.relayedIP, port: port),
                   relayPort: port, relaySocket: socket, clientPath: context.path,
                   expires: .now() + .seconds(Int64(lifetime)), allocateTransaction: m.transactionID)
    }

    /// The allocation exists: keep it, count it, and answer with its addresses (§7.2 step 8).
    func registerAllocation(_ allocation: Allocation, request m: StunMessage, _ context: RequestContext,
                            integrity: ResponseIntegrity, lifetime: UInt32, reservedToken: UInt64? = nil,
                            refusedAdditional: Bool = false, additionalError: Int? = nil) {
        allocations[allocation.fiveTuple] = allocation
        stats.allocationsCreated.add()
        stats.allocationsActive.add()
        var r = makeResponse(to: m, error: nil)
        r.appendXorAddress(AttributeType.xorRelayedAddress, allocation.relayedAddress)
        if let additional = allocation.additional {
            r.appendXorAddress(AttributeType.xorRelayedAddress, additional.relayedAddress)
        }
        r.appendLifetime(lifetime)
        if let reservedToken { r.appendReservationToken(reservedToken) }
        if refusedAdditional { r.appendAddressErrorCode(family: .ipv6, code: 440, reason: "Address Family not Supported") }
        if additionalError == 508 { r.appendAddressErrorCode(family: .ipv6, code: 508, reason: "Insufficient Capacity") }
        r.appendXorAddress(AttributeType.xorMappedAddress, context.client)
        allocation.allocateResponse = send(r, for: m, context, integrity: integrity, flush: true)
        logger.debug("allocation created", metadata: [
            "five-tuple": "\(allocation.fiveTuple)", "relayed": "\(allocation.relayedAddress)",
            "user": "\(allocation.credential.username)", "transport": "\(allocation.tcpListener == nil ? "udp" : "tcp")",
        ])
    }

    /// The IPv6 half of a dual allocation: another port, an IPv6 relay socket. Reports whether it worked.
    func addIPv6Relay(to allocation: Allocation, completion: @escaping (Bool) -> Void) {
        guard let ip6 = shared.relayedIP6, let p = shared.portPool.acquire(even: false, reserveNext: false) else {
            completion(false)
            return
        }
        bindRelay(port: p.port, family: .ipv6, attemptsLeft: 8, refused: [], even: false, dontFragment: false) { [self] result in
            switch result {
            case .failure:
                completion(false)
            case .success(let (socket, port)):
                let channel = socket.channel
                guard allocations[allocation.fiveTuple] == nil else {
                    channel.close(promise: nil)
                    shared.portPool.release(port)
                    completion(false)
                    return
                }
                try? channel.pipeline.syncOperations.handler(type: RelaySocketHandler.self).allocation = allocation
                allocation.additional = AdditionalRelay(channel: channel, relayedAddress: TransportAddress(ip: ip6, port: port), port: port)
                completion(true)
            }
        }
    }

    /// Binds a relay socket on this event loop. A port the OS refuses (taken by another process) is
    /// given back and another one tried, so a port in use is never handed out.
    /// `heldSocket`: the socket that has held a reserved port since its EVEN-PORT reservation; it becomes
    /// the relay socket as it is (no new bind, so nothing else can take the port in between).
    /// The socket is made here (`UDPSocket`, IPv6-only for IPv6) and adopted by NIO, so that the relay
    /// path can write to its descriptor.
    func bindRelay(port: UInt16, family: AddressFamily, attemptsLeft: Int, refused: Set<UInt16>, even: Bool, dontFragment: Bool,
                   heldSocket: CInt? = nil, completion: @escaping (Result<(WritableSocket, UInt16), Error>) -> Void) {
        let engine = self
        let fd: CInt
        let bound: EventLoopFuture<Channel>
        do {
            let socket = try heldSocket ?? UDPSocket.bound(host: configuration.relayBindAddress(family), port: Int(port))
            fd = socket
            bound = DatagramBootstrap(group: eventLoop)
                .turnRelayReadOptions()
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RelaySocketHandler(engine: engine, fd: socket))
                    }
                }
                .withBoundSocket(socket)
        } catch {
            fd = -1
            bound = eventLoop.makeFailedFuture(error)
        }
        bound
            .hop(to: eventLoop)
            .assumeIsolated()  // the callback runs on this engine's loop, so it may use non-Sendable state
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    if dontFragment {
                        // RFC 8656 §7.2 step 3 / §14: DONT-FRAGMENT → set DF on relayed datagrams.
                        let option = family == .ipv6
                            ? ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IPV6)),
                                                                name: .init(rawValue: CInt(IPV6_MTU_DISCOVER)))
                            : ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IP)),
                                                                name: .init(rawValue: CInt(IP_MTU_DISCOVER)))
                        _ = channel.setOption(option, value: Int(IP_PMTUDISC_DO))
                    }
                    completion(.success((WritableSocket(channel: channel, fd: fd, writer: writer), port)))
                case .failure(let error):
                    shared.portPool.release(port)
                    var refused = refused
                    refused.insert(port)
                    guard attemptsLeft > 1, let next = shared.portPool.acquire(even: even, excluding: refused) else {
                        completion(.failure(error))
                        return
                    }
                    bindRelay(port: next.port, family: family, attemptsLeft: attemptsLeft - 1, refused: refused, even: even,
                              dontFragment: dontFragment, completion: completion)
                }
            }
    }
}
