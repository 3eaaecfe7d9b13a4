import Auth
import Logging
import NIOCore
import Synchronization

/// What every event loop's engine shares: configuration and the few cross-loop structures, all
/// Sendable and touched only when allocations come and go.
public struct TurnShared: Sendable {
    public let configuration: TurnConfiguration
    public let credentials: CredentialStore
    public let portPool: RelayPortPool
    public let quota: AllocationQuota
    public let stats: TurnStats
    public let relayedIP: IPAddress
    /// The address of IPv6 relays; nil when this host offers none (REQUESTED-ADDRESS-FAMILY IPv6 → 440).
    public let relayedIP6: IPAddress?
    /// RFC 6062 peer connections by CONNECTION-ID, across engines.
    let tcpConnections = TCPConnectionRegistry()
    /// Quotas, bandwidth cap, request rate, peer policy: replaced on reload, re-read by engines each second.
    public let limits: TurnLimitsBox
    let unauthenticatedRequests = SourceRateLimiter()
    /// Open TCP/TLS connections per source (turn.max_connections_per_source).
    let streamSources = StreamSourceCounter()
    /// Set when a graceful shutdown begins: new allocations are refused, existing ones keep relaying.
    let draining = DrainFlag()
    public let logger: Logger

    public init(configuration: TurnConfiguration, credentials: CredentialStore, relayedIP: IPAddress,
                relayedIP6: IPAddress? = nil, stats: TurnStats = TurnStats(), logger: Logger) {
        self.configuration = configuration
        self.credentials = credentials
        self.portPool = RelayPortPool(range: configuration.relayPorts)
        self.quota = AllocationQuota(.init(perUser: configuration.maxAllocationsPerUser, total: configuration.maxAllocations))
        self.stats = stats
        self.relayedIP = relayedIP
        self.relayedIP6 = relayedIP6
        self.logger = logger
        self.limits = TurnLimitsBox(configuration.limits)
        limits.set(withHostAddresses(configuration.limits))
    }

    /// Applies new limits (configuration reload): quotas at once, the rest within a second. The host's
    /// own addresses are read again (an interface may have come or gone).
    public func updateLimits(_ new: TurnLimits) {
        limits.set(withHostAddresses(new))
        quota.update(.init(perUser: new.maxAllocationsPerUser, total: new.maxAllocations))
    }

    /// `limits` with the peer policy knowing this host's addresses and relay ports.
    private func withHostAddresses(_ limits: TurnLimits) -> TurnLimits {
        var l = limits
        l.peerPolicy.hostAddresses = HostAddresses.discover(configuration, relayedIP: relayedIP, relayedIP6: relayedIP6)
        l.peerPolicy.relayPorts = configuration.relayPorts
        return l
    }

    public var isDraining: Bool { draining.isSet }
}

/// One allocation as the admin API and dashboard show it.
public struct AllocationInfo: Sendable, Codable {
    public let username: String
    public let client: String
    public let transport: String
    public let relayed: String
    public let permissions: Int
    public let channels: Int
    public let bytesToPeer: Int
    public let bytesToClient: Int
    public let expiresIn: Int
}

final class DrainFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

/// The STUN/TURN server state of one event loop: its allocations and the dispatch from method to
/// handler. Everything here runs on `eventLoop` only, so the relay path needs no lock.
///
/// `@unchecked Sendable` because it is confined, not synchronised: the listener and relay sockets that
/// call into it are bound to `eventLoop`, and so are its timers and future callbacks.
final class TurnEngine: @unchecked Sendable {
    let eventLoop: EventLoop
    let shared: TurnShared
    let authenticator: LongTermAuthenticator
    var allocations: [FiveTuple: Allocation] = [:]
    /// Allocations whose relay socket is still being bound; retransmitted Allocates wait for it.
    var pendingAllocations: Set<FiveTuple> = []
    /// Relay sockets written to during the current read batch, queued on the writer when the batch ends.
    var dirtyRelays: [Allocation] = []
    /// Channels written to in this tick outside the writer, flushed together at its end.
    var dirtyClientChannels: [Channel] = []
    var tickFlushScheduled = false
    private var sweeper: RepeatedTask?
    /// This loop's copy of the live limits, refreshed by the sweeper, and the generation it was read at.
    var limits: TurnLimits
    private var limitsGeneration: Int

    /// Coalesce same-sized datagrams to one destination into UDP GSO writes.
    let gso: Bool
    /// Relayed UDP datagrams of this loop's sockets, sent with sendmmsg at the end of the tick.
    let writer: DatagramWriter
    /// The relay path's reads past NIO's first of each wake-up, for every UDP socket of this loop.
    let drain: DatagramDrain
    var configuration: TurnConfiguration { shared.configuration }
    /// Stored, not read through `shared` each time: it is counted for every relayed packet.
    let stats: TurnStats
    var logger: Logger { shared.logger }

    init(eventLoop: EventLoop, shared: TurnShared) {
        self.eventLoop = eventLoop
        self.shared = shared
        stats = shared.stats
        gso = shared.configuration.udpGSO && System.supportsUDPSegmentationOffload
        writer = DatagramWriter(dropped: { [stats = shared.stats] in stats.sendFailed.add($0) })
        drain = DatagramDrain(truncated: { [stats = shared.stats] in stats.malformedDropped.add($0) })
        (limits, limitsGeneration) = shared.limits.versioned
        authenticator = LongTermAuthenticator(
            realm: shared.configuration.realm,
            nonces: NonceManager(secret: shared.configuration.nonceSecret, lifetime: shared.configuration.nonceLifetime),
            credentials: shared.credentials)
    }

    func start() {
        // A strong capture: a weak one would give the engine a reference-count side table, slowing every
        // retain and release of it on the relay path. stop() cancels the task, which lets go of the engine.
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
            sweep()
        }
    }

    func stop() {
        sweeper?.cancel()
        for a in Array(allocations.values) { delete(a, reason: "server stopping") }
    }

    // MARK: Dispatch

    /// One datagram (or stream frame) from a client. RFC 8656 §12.4 / RFC 7983: the first two bits
    /// tell ChannelData (01) from STUN (00); anything else is dropped and counted.
    /// `path` is only built for STUN messages: ChannelData needs the five-tuple alone.
    @inline(__always)
    func receive(_ buffer: ByteBuffer, fiveTuple: FiveTuple, path: @autoclosure () -> ClientPath) {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else {
            stats.malformedDropped.add()
            return
        }
        if ChannelData.isChannelData(firstByte: first) {
            relayChannelData(buffer, from: fiveTuple)
            return
        }
        let context = RequestContext(fiveTuple: fiveTuple, path: path())
        let message: StunMessage
        do {
            message = try StunMessage(decoding: buffer)
        } catch {
            stats.malformedDropped.add()
            return
        }
        handle(message, context: context)
    }

    func handle(_ m: StunMessage, context: RequestContext) {
        switch m.messageClass {
        case .request:
            // Requests without integrity cost us a response and prove nothing: rate-limited per source.
            if limits.unauthenticatedRate > 0, MessageIntegrity.kind(of: m) == nil,
               !shared.unauthenticatedRequests.allow(context.client.ip.sourceKey, rate: limits.unauthenticatedRate,
                                                     burst: limits.unauthenticatedBurst) {
                stats.rateLimited.add()
                return
            }
            switch m.method {
            case .binding: handleBinding(m, context)
            case .allocate: handleAllocate(m, context)
            case .refresh: handleRefresh(m, context)
            case .createPermission: handleCreatePermission(m, context)
            case .channelBind: handleChannelBind(m, context)
            case .connect: handleConnect(m, context)
            case .connectionBind: handleConnectionBind(m, context)
            default:
                // RFC 8489 §6.3.1: an unknown method in a request → 400.
                respond(to: m, context, error: .badRequest, integrity: nil)
            }
        case .indication:
            if m.method == .send { handleSend(m, context) } else { stats.malformedDropped.add() }
        case .successResponse, .errorResponse:
            // A server sends responses, it never expects one.
            stats.malformedDropped.add()
        }
    }

    // MARK: Responses

    /// Integrity for a response: the key and the kind of integrity attribute the request used.
    struct ResponseIntegrity {
        let key: [UInt8]
        let kind: MessageIntegrity.Kind
    }

    func makeResponse(to request: StunMessage, error: StunError?) -> StunMessage {
        StunMessage(method: request.method, messageClass: error == nil ? .successResponse : .errorResponse,
                    transactionID: request.transactionID)
    }

    /// Finishes and sends a response: ERROR-CODE, SOFTWARE, integrity like the request's, and a
    /// FINGERPRINT when the request carried one (RFC 8489 §14.7).
    func send(_ response: StunMessage, for request: StunMessage, _ context: RequestContext,
              integrity: ResponseIntegrity?, flush: Bool = false) -> [UInt8] {
        var r = response
        if !configuration.software.isEmpty { r.appendText(AttributeType.software, configuration.software) }
        let protection: StunMessage.Integrity
        switch integrity {
        case nil: protection = .none
        case let i? where i.kind == .sha256: protection = .sha256(key: i.key)
        case let i?: protection = .sha1(key: i.key)
        }
        let bytes = r.encode(integrity: protection, fingerprint: request.has(AttributeType.fingerprint))
        context.path.write(context.path.channel.allocator.buffer(bytes: bytes))
        if flush { context.path.flush() }
        return bytes
    }

    func respond(to request: StunMessage, _ context: RequestContext, error: StunError,
                 integrity: ResponseIntegrity?, challenge: Bool = false, flush: Bool = false,
                 extra: (inout StunMessage) -> Void = { _ in }) {
        var r = makeResponse(to: request, error: error)
        r.append(AttributeType.errorCode, error.encoded)
        if challenge { authenticator.addChallenge(to: &r, client: context.client.ip) }
        extra(&r)
        stats.countError(error.code)
        logger.debug("error response", metadata: [
            "method": "\(request.method)", "code": "\(error.code)", "client": "\(context.client)",
        ])
        _ = send(r, for: request, context, integrity: integrity, flush: flush)
    }

    /// Runs the long-term credential check; on failure answers the request and returns nil.
    func authenticate(_ m: StunMessage, _ context: RequestContext, existing: Allocation?)
        -> (integrity: ResponseIntegrity, credential: SessionCredential)?
    {
        let throttle = shared.credentials.throttle
        let source = context.client.ip.sourceKey
        let presentsCredentials = MessageIntegrity.kind(of: m) != nil
        // A source blocked after repeated failures gets no new authentication (requests on an allocation
        // it already holds are checked against that allocation's key as usual). Dropped: STUN has no
        // "try later" code, and an answer would only help the guesser.
        if existing == nil, presentsCredentials, case .blocked = throttle.check(source) {
            stats.authBlocked.add()
            return nil
        }
        switch authenticator.authenticate(m, client: context.client.ip, existing: existing?.credential) {
        case .authenticated(let credential, let kind):
            let integrity = ResponseIntegrity(key: credential.key, kind: kind)
            // RFC 8489 §6.3.1: unknown comprehension-required attributes → 420 once authenticated.
            let unknown = m.unknownRequiredAttributes
            if !unknown.isEmpty {
                respond(to: m, context, error: .unknownAttribute, integrity: integrity) { $0.appendUnknownAttributes(unknown) }
                return nil
            }
            return (integrity, credential)
        case .reject(let error, let challenge):
            // The first, credential-less 401 is the challenge every client gets; only wrong credentials count.
            if presentsCredentials, error.code == 401 || error.code == 441 {
                stats.authFailures.add()
                let delay = throttle.recordFailure(source)
                if delay > 0 {
                    // Answered late, without holding the loop: the growing delay slows a guesser down.
                    eventLoop.scheduleTask(in: .milliseconds(Int64(delay * 1000))) { [self] in
                        respond(to: m, context, error: error, integrity: nil, challenge: challenge, flush: true)
                    }
                    return nil
                }
            }
            respond(to: m, context, error: error, integrity: nil, challenge: challenge)
            return nil
        }
    }

    // MARK: Lifetimes

    /// RFC 8656 §7.2 step 7 and §7.3: min(requested, maximum), but never less than the default.
    func grantedLifetime(_ requested: UInt32?) -> UInt32 {
        guard let requested else { return configuration.defaultLifetime }
        let capped = min(requested, configuration.maxLifetime)
        return max(capped, configuration.defaultLifetime)
    }

    // MARK: Expiry

    func sweep() {
        let now = NIODeadline.now()
        let (current, generation) = shared.limits.versioned
        limits = current
        if generation != limitsGeneration {
            limitsGeneration = generation
            withdrawRefusedPeers()
        }
        shared.unauthenticatedRequests.sweep(rate: limits.unauthenticatedRate, burst: limits.unauthenticatedBurst, now: now)
        shared.portPool.expireReservations()  // closes the sockets of reservations nobody redeemed
        for a in Array(allocations.values) {
            if a.expires <= now {
                delete(a, reason: "expired")
            } else {
                a.permissions.expire(now: now)
                a.channels.expire(now: now)
            }
        }
    }

    /// After the peer policy changed (a reload): permissions, channel bindings and RFC 6062 connections to
    /// peers it now refuses end at once, rather than relaying for the rest of their lifetimes (Send
    /// indications are judged per packet anyway).
    func withdrawRefusedPeers() {
        let policy = limits.peerPolicy
        var withdrawn = 0
        for a in allocations.values {
            withdrawn += a.permissions.removeAll { !policy.permits($0) }
            withdrawn += a.channels.removeAll { !policy.permits($0) }
            if let listener = a.tcpListener {
                for c in listener.connections.values where !policy.permits(c.peer) {
                    withdrawn += 1
                    c.peerChannel?.eventLoop.execute { c.closeBoth() }
                }
            }
        }
        if withdrawn > 0 { logger.info("peer policy changed: withdrew \(withdrawn) permission(s), channel(s) or connection(s)") }
    }

    func hasAllocation(_ fiveTuple: FiveTuple) -> Bool { allocations[fiveTuple] != nil }

    /// RFC 8656 §5: an allocation made over TCP or TLS ends with its connection.
    func streamClosed(_ fiveTuple: FiveTuple) {
        if let a = allocations[fiveTuple] { delete(a, reason: "connection closed") }
    }

    func allocationInfos() -> [AllocationInfo] {
        let now = NIODeadline.now()
        return allocations.values.map { a in
            AllocationInfo(username: a.credential.username, client: "\(a.fiveTuple.client)", transport: a.fiveTuple.transport.name,
                           relayed: "\(a.relayedAddress)" + (a.additional.map { " \($0.relayedAddress)" } ?? ""),
                           permissions: a.permissions.count, channels: a.channels.count,
                           bytesToPeer: a.bytesToPeer, bytesToClient: a.bytesToClient,
                           expiresIn: max(0, Int((a.expires - now).nanoseconds / 1_000_000_000)))
        }
    }

    /// Deletes the allocations made with the credentials of signaling session `session`; returns how many.
    func release(session: String, reason: String) -> Int {
        let matching = allocations.values.filter { $0.credential.session == session }
        for a in matching { delete(a, reason: reason) }
        return matching.count
    }

    func delete(_ a: Allocation, reason: String) {
        guard allocations.removeValue(forKey: a.fiveTuple) != nil else { return }
        writer.flush()  // what was relayed before the delete still goes out
        a.relayChannel.close(promise: nil)
        if let additional = a.additional {
            additional.channel.close(promise: nil)
            shared.portPool.release(additional.port)
        }
        if let listener = a.tcpListener {
            for c in listener.connections.values {
                shared.tcpConnections.remove(c.id)
                c.peerChannel?.eventLoop.execute { c.closeBoth() }
            }
            listener.connections = [:]
        }
        shared.portPool.release(a.relayPort)
        shared.quota.release(user: a.credential.quotaOwner)
        stats.allocationsActive.subtract()
        logger.debug("allocation deleted", metadata: ["five-tuple": "\(a.fiveTuple)", "reason": "\(reason)"])
    }

    /// Queues what this read batch gathered for peers (a GSO run per relay socket where the batch
    /// allows); it is sent with the rest of the tick's datagrams at the tick's end (sending earlier cost
    /// more CPU per packet: BENCHMARKS.md).
    @inline(__always)
    func queueDirtyRelays() {
        guard !dirtyRelays.isEmpty else { return }
        for a in dirtyRelays {
            a.relayNeedsFlush = false
            a.toPeer.emit(a.relaySocket)
        }
        dirtyRelays.removeAll(keepingCapacity: true)
        scheduleTickFlush()
    }
}
