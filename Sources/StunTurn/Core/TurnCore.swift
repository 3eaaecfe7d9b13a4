import Auth
import Logging
import NIOCore

/// The time the core reads: monotonic for lifetimes and expiries, wall-clock seconds for nonces (which
/// must mean the same on every instance of a cluster). Tests and the fuzzer set their own.
struct TurnClock: Sendable {
    var now: @Sendable () -> NIODeadline = { .now() }
    var wallSeconds: @Sendable () -> Int = { NonceManager.systemSeconds() }
}

/// The STUN/TURN server of one event loop without its sockets: requests in, actions out
/// (`TurnAction`), the relay path's datagrams into a `DatagramSink`. The transport shell (`TurnEngine`)
/// feeds it what the sockets read and carries its actions out; in-memory tests and the fuzzer drive it
/// the same way without any socket.
///
/// Confined to one event loop (its shell's); nothing here is locked.
final class TurnCore {
    let shared: TurnShared
    let manager: AllocationManager
    let authenticator: LongTermAuthenticator
    let sink: DatagramSink
    let clock: TurnClock
    let allocator = ByteBufferAllocator()
    /// Coalesce same-sized datagrams to one destination into UDP GSO writes.
    let gso: Bool
    /// Stored, not read through `shared` each time: it is counted for every relayed packet.
    let stats: TurnStats
    /// This loop's copy of the live limits, refreshed by `sweep`, and the generation it was read at.
    var limits: TurnLimits
    private var limitsGeneration: Int
    /// Allocations with datagrams for peers gathered in the current read batch (`endOfReadBatch`).
    var dirtyRelays: [Allocation] = []
    /// Connect requests (RFC 6062) waiting for their peer connection, by CONNECTION-ID.
    var connecting: [UInt32: PendingConnect] = [:]

    var configuration: TurnConfiguration { shared.configuration }
    var logger: Logger { shared.logger }

    init(shared: TurnShared, sink: DatagramSink, gso: Bool, clock: TurnClock = TurnClock()) {
        self.shared = shared
        self.sink = sink
        self.gso = gso
        self.clock = clock
        stats = shared.stats
        manager = AllocationManager(shared: shared)
        (limits, limitsGeneration) = shared.limits.versioned
        authenticator = LongTermAuthenticator(
            realm: shared.configuration.realm,
            nonces: NonceManager(secret: shared.configuration.nonceSecret, lifetime: shared.configuration.nonceLifetime,
                                 clock: clock.wallSeconds),
            credentials: shared.credentials)
    }

    // MARK: Dispatch

    /// One datagram (or stream frame) from a client. RFC 8656 §12.4 / RFC 7983: the first two bits
    /// tell ChannelData (01) from STUN (00); anything else is dropped and counted.
    /// `path` is only built for STUN messages: ChannelData needs the five-tuple alone.
    @inline(__always)
    func receive(_ buffer: ByteBuffer, fiveTuple: FiveTuple, path: @autoclosure () -> ClientPath) -> [TurnAction] {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else {
            stats.malformedDropped.add()
            return []
        }
        if ChannelData.isChannelData(firstByte: first) {
            relayChannelData(buffer, from: fiveTuple)
            return []
        }
        let message: StunMessage
        do {
            message = try StunMessage(decoding: buffer)
        } catch {
            stats.malformedDropped.add()
            return []
        }
        return handle(message, RequestInfo(fiveTuple: fiveTuple, path: path()))
    }

    func handle(_ m: StunMessage, _ request: RequestInfo) -> [TurnAction] {
        switch m.messageClass {
        case .request:
            // Requests without integrity cost us a response and prove nothing: rate-limited per source.
            if limits.unauthenticatedRate > 0, MessageIntegrity.kind(of: m) == nil,
               !shared.unauthenticatedRequests.allow(request.client.ip.sourceKey, rate: limits.unauthenticatedRate,
                                                     burst: limits.unauthenticatedBurst, now: clock.now()) {
                stats.rateLimited.add()
                return []
            }
            switch m.method {
            case .binding: return handleBinding(m, request)
            case .allocate: return handleAllocate(m, request)
            case .refresh: return handleRefresh(m, request)
            case .createPermission: return handleCreatePermission(m, request)
            case .channelBind: return handleChannelBind(m, request)
            case .connect: return handleConnect(m, request)
            case .connectionBind: return handleConnectionBind(m, request)
            default:
                // RFC 8489 §6.3.1: an unknown method in a request → 400.
                return [reply(to: m, request, error: .badRequest, integrity: nil)]
            }
        case .indication:
            if m.method == .send { handleSend(m, request) } else { stats.malformedDropped.add() }
            return []
        case .successResponse, .errorResponse:
            // A server sends responses, it never expects one.
            stats.malformedDropped.add()
            return []
        }
    }

    // MARK: Responses

    /// Integrity for a response: the key and the kind of integrity attribute the request used.
    struct ResponseIntegrity {
        let key: [UInt8]
        let kind: MessageIntegrity.Kind
    }

    func response(to request: StunMessage, error: StunError? = nil) -> StunMessage {
        StunMessage(method: request.method, messageClass: error == nil ? .successResponse : .errorResponse,
                    transactionID: request.transactionID)
    }

    /// A finished response: SOFTWARE, integrity like the request's, and a FINGERPRINT when the request
    /// carried one (RFC 8489 §14.7).
    func encode(_ response: StunMessage, for request: StunMessage, integrity: ResponseIntegrity?) -> ByteBuffer {
        var r = response
        if !configuration.software.isEmpty { r.appendText(AttributeType.software, configuration.software) }
        let protection: StunMessage.Integrity
        switch integrity {
        case nil: protection = .none
        case let i? where i.kind == .sha256: protection = .sha256(key: i.key)
        case let i?: protection = .sha1(key: i.key)
        }
        return allocator.buffer(bytes: r.encode(integrity: protection, fingerprint: request.has(AttributeType.fingerprint)))
    }

    /// Sends `response` back on the request's path.
    func reply(_ response: StunMessage, to request: StunMessage, _ info: RequestInfo, integrity: ResponseIntegrity?) -> TurnAction {
        .send(encode(response, for: request, integrity: integrity), to: info.path)
    }

    /// An error response, counted by code.
    func reply(to request: StunMessage, _ info: RequestInfo, error: StunError, integrity: ResponseIntegrity?,
               challenge: Bool = false, extra: (inout StunMessage) -> Void = { _ in }) -> TurnAction {
        .send(errorResponse(to: request, info, error: error, integrity: integrity, challenge: challenge, extra: extra), to: info.path)
    }

    private func errorResponse(to request: StunMessage, _ info: RequestInfo, error: StunError, integrity: ResponseIntegrity?,
                               challenge: Bool, extra: (inout StunMessage) -> Void = { _ in }) -> ByteBuffer {
        var r = response(to: request, error: error)
        r.append(AttributeType.errorCode, error.encoded)
        if challenge { authenticator.addChallenge(to: &r, client: info.client.ip) }
        extra(&r)
        stats.countError(error.code)
        logger.debug("error response", metadata: [
            "method": "\(request.method)", "code": "\(error.code)", "client": "\(info.client)",
        ])
        return encode(r, for: request, integrity: integrity)
    }

    /// The long-term credential check of a request: its integrity and credential, or the answer (none,
    /// an error now, or an error later) that ends the request.
    enum Authentication {
        case authenticated(ResponseIntegrity, SessionCredential)
        case refused([TurnAction])

        var refusal: [TurnAction] {
            if case .refused(let actions) = self { return actions }
            return []
        }
    }

    /// How a request on an existing allocation (Refresh, CreatePermission, ChannelBind, Connect) starts:
    /// authenticated against the allocation on its 5-tuple, or already answered (a refusal, or 437 when
    /// the 5-tuple has no allocation: RFC 8656 §7.3, §9.2, §11.2; RFC 6062 §5.2).
    enum ExistingAllocation {
        case found(Allocation, ResponseIntegrity)
        case answered([TurnAction])

        var answer: [TurnAction] {
            if case .answered(let actions) = self { return actions }
            return []
        }
    }

    func existingAllocation(_ m: StunMessage, _ request: RequestInfo) -> ExistingAllocation {
        let allocation = manager.allocations[request.fiveTuple]
        let auth = authenticate(m, request, existing: allocation)
        guard case .authenticated(let integrity, _) = auth else { return .answered(auth.refusal) }
        guard let allocation else { return .answered([reply(to: m, request, error: .allocationMismatch, integrity: integrity)]) }
        return .found(allocation, integrity)
    }

    func authenticate(_ m: StunMessage, _ info: RequestInfo, existing: Allocation?) -> Authentication {
        let throttle = shared.credentials.throttle
        let source = info.client.ip.sourceKey
        let presentsCredentials = MessageIntegrity.kind(of: m) != nil
        // A source blocked after repeated failures gets no new authentication (requests on an allocation
        // it already holds are checked against that allocation's key as usual). Dropped: STUN has no
        // "try later" code, and an answer would only help the guesser.
        if existing == nil, presentsCredentials, case .blocked = throttle.check(source) {
            stats.authBlocked.add()
            return .refused([])
        }
        switch authenticator.authenticate(m, client: info.client.ip, existing: existing?.credential, resolved: info.resolved) {
        case .lookupNeeded(let username):
            stats.authLookupsWaited.add()
            return .refused([.lookUpCredentials(PendingLookup(username: username, message: m, request: info))])
        case .lookupFailed(.overloaded):
            // Too many lookups under way: dropped, as if lost (a UDP client retransmits; by then the
            // chain may have room). Counted by the chain.
            return .refused([])
        case .lookupFailed:
            // An authentication failure (as in the original server), but not the client's: a 401 with a
            // fresh challenge, not counted against its source.
            return .refused([reply(to: m, info, error: .unauthorized, integrity: nil, challenge: true)])
        case .authenticated(let credential, let kind):
            let integrity = ResponseIntegrity(key: credential.key, kind: kind)
            // RFC 8489 §6.3.1: unknown comprehension-required attributes → 420 once authenticated.
            let unknown = m.unknownRequiredAttributes
            if !unknown.isEmpty {
                return .refused([reply(to: m, info, error: .unknownAttribute, integrity: integrity) { $0.appendUnknownAttributes(unknown) }])
            }
            return .authenticated(integrity, credential)
        case .reject(let error, let challenge):
            // The first, credential-less 401 is the challenge every client gets; only wrong credentials count.
            if presentsCredentials, error.code == 401 || error.code == 441 {
                stats.authFailures.add()
                let delay = throttle.recordFailure(source)
                if delay > 0 {
                    // Answered late, without holding the loop: the growing delay slows a guesser down.
                    let answer = errorResponse(to: m, info, error: error, integrity: nil, challenge: challenge)
                    return .refused([.sendLater(answer, to: info.path, after: .milliseconds(Int64(delay * 1000)))])
                }
            }
            return .refused([reply(to: m, info, error: error, integrity: nil, challenge: challenge)])
        }
    }

    /// The lookup chain's answer for a request that waited for it: the request is handled again with it.
    func credentialsResolved(_ pending: PendingLookup, _ resolution: CredentialResolution) -> [TurnAction] {
        var request = pending.request
        request.resolved = ResolvedCredentials(username: pending.username, resolution: resolution)
        return handle(pending.message, request)
    }

    // MARK: Lifetimes

    /// RFC 8656 §7.2 step 7 and §7.3: min(requested, maximum), but never less than the default.
    func grantedLifetime(_ requested: UInt32?) -> UInt32 {
        guard let requested else { return configuration.defaultLifetime }
        let capped = min(requested, configuration.maxLifetime)
        return max(capped, configuration.defaultLifetime)
    }

    // MARK: Expiry

    /// Once a second: the live limits, expired allocations, permissions and channel bindings.
    func sweep() -> [TurnAction] {
        let now = clock.now()
        var actions: [TurnAction] = []
        let (current, generation) = shared.limits.versioned
        limits = current
        if generation != limitsGeneration {
            limitsGeneration = generation
            actions += withdrawRefusedPeers()
        }
        shared.unauthenticatedRequests.sweep(rate: limits.unauthenticatedRate, burst: limits.unauthenticatedBurst, now: now)
        for a in Array(manager.allocations.values) {
            if a.expires <= now {
                actions += end(a, reason: "expired")
            } else {
                a.permissions.expire(now: now)
                a.channels.expire(now: now)
            }
        }
        return actions
    }

    /// After the peer policy changed (a reload): permissions, channel bindings and RFC 6062 connections to
    /// peers it now refuses end at once, rather than relaying for the rest of their lifetimes (Send
    /// indications are judged per packet anyway).
    func withdrawRefusedPeers() -> [TurnAction] {
        let policy = limits.peerPolicy
        var withdrawn = 0
        var actions: [TurnAction] = []
        for a in manager.allocations.values {
            withdrawn += a.permissions.removeAll { !policy.permits($0) }
            withdrawn += a.channels.removeAll { !policy.permits($0) }
            for c in (a.peerConnections ?? [:]).values where !policy.permits(c.peer) {
                withdrawn += 1
                actions.append(.closePeerConnection(c))
            }
        }
        if withdrawn > 0 { logger.info("peer policy changed: withdrew \(withdrawn) permission(s), channel(s) or connection(s)") }
        return actions
    }

    func hasAllocation(_ fiveTuple: FiveTuple) -> Bool { manager.allocations[fiveTuple] != nil }

    /// RFC 8656 §5: an allocation made over TCP or TLS ends with its connection (and one still being
    /// made is abandoned).
    func streamClosed(_ fiveTuple: FiveTuple) -> [TurnAction] {
        let abandoned = manager.cancelPending(fiveTuple)
        guard let a = manager.allocations[fiveTuple] else { return abandoned }
        return abandoned + end(a, reason: "connection closed")
    }

    func allocationInfos() -> [AllocationInfo] {
        let now = clock.now()
        return manager.allocations.values.map { a in
            AllocationInfo(username: a.credential.username, client: "\(a.fiveTuple.client)", transport: a.fiveTuple.transport.name,
                           relayed: "\(a.relayedAddress)" + (a.additional.map { " \($0.relayedAddress)" } ?? ""),
                           permissions: a.permissions.count, channels: a.channels.count,
                           bytesToPeer: a.bytesToPeer, bytesToClient: a.bytesToClient,
                           expiresIn: max(0, Int((a.expires - now).nanoseconds / 1_000_000_000)))
        }
    }

    /// Ends the allocations made with the credentials of signaling session `session`.
    func release(session: String, reason: String) -> (count: Int, actions: [TurnAction]) {
        let matching = manager.allocations.values.filter { $0.credential.session == session }
        return (matching.count, matching.flatMap { end($0, reason: reason) })
    }

    /// Ends every allocation (the server is stopping).
    func endAll(reason: String) -> [TurnAction] {
        Array(manager.allocations.values).flatMap { end($0, reason: reason) }
    }

    /// Ends an allocation: what the relay path gathered for it still goes out, then its lease is released.
    func end(_ a: Allocation, reason: String) -> [TurnAction] {
        if a.relayNeedsFlush {
            a.relayNeedsFlush = false
            a.toPeer.emit(a.relaySocket, sink: sink)
        }
        let actions = manager.end(a)
        logger.debug("allocation deleted", metadata: ["five-tuple": "\(a.fiveTuple)", "reason": "\(reason)"])
        return actions
    }
}
