import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import ServerMetrics
import Synchronization

/// How a `NATSClient` connects and behaves when the link breaks.
public struct NATSClientConfiguration: Sendable {
    /// Tried in turn; a reconnect goes on to the next one.
    public var servers: [NATSServerURL]
    /// Credentials for servers whose URL has none: user and password, or a token.
    public var user: String?
    public var password: String?
    public var token: String?
    /// TLS for servers that ask for it (INFO `tls_required`) or whose URL is `tls://`; `requireTLS`
    /// refuses a server that does not offer it. Nil = the system's trust roots.
    public var tls: TLSConfiguration?
    public var requireTLS = false
    /// Shown by the server (`nats-server` monitoring, logs).
    public var name = "webrtc-server"
    /// Whether the server sends this connection what it publishes itself.
    public var echo = true
    /// A PING this often; `maxPingsOut` unanswered ones mean a dead link, which is closed and reconnected.
    public var pingInterval: TimeAmount = .seconds(5)
    public var maxPingsOut = 2
    public var connectTimeout: TimeAmount = .seconds(2)
    /// Reconnect delays: the first try at once, then doubling from `reconnectWait` up to
    /// `maxReconnectWait` (each ±20 %, so that instances do not retry in step), across `servers` in turn.
    public var reconnectWait: TimeAmount = .milliseconds(100)
    public var maxReconnectWait: TimeAmount = .seconds(2)
    /// Bytes of publications held while disconnected (and while the socket cannot take more); what would
    /// go beyond is dropped and counted, never buffered without bound.
    public var bufferLimit = 8 << 20

    public init(servers: [NATSServerURL]) { self.servers = servers }
}

/// One message received on a subscription.
public struct NATSMessage: Sendable {
    public let subject: String
    public let reply: String?
    public let payload: ByteBuffer
}

/// Counters of a NATS connection (read by /metrics and /api/stats).
public final class NATSStats: Sendable {
    let connectedFlag = Atomic<Bool>(false)
    /// Connections made after the first.
    public let reconnects = StatCounter()
    public let messagesIn = StatCounter()
    public let messagesOut = StatCounter()
    public let bytesIn = StatCounter()
    public let bytesOut = StatCounter()
    /// Publications dropped: over the buffer while disconnected or slow, or over the server's max_payload.
    public let dropped = StatCounter()
    /// `-ERR` lines the server sent.
    public let serverErrors = StatCounter()

    public init() {}
    public var connected: Bool { connectedFlag.load(ordering: .relaxed) }

    /// Declared once: `/metrics` and the `nats` object of the cluster in `/api/stats`.
    public var metrics: [Metric] {
        [
            .value("webrtc_cluster_nats_connected", .gauge, help: "1 while the NATS link is up") { self.connected ? 1 : 0 },
            .counter("webrtc_cluster_nats_reconnects_total", json: "reconnects", help: "NATS connections made after the first", reconnects),
            Metric("webrtc_cluster_nats_messages_total", .counter, labels: ["direction"], help: "NATS messages, `in` and `out`") {
                [.init([("direction", "in")], self.messagesIn.value), .init([("direction", "out")], self.messagesOut.value)]
            },
            Metric("webrtc_cluster_nats_bytes_total", .counter, labels: ["direction"], help: "NATS payload bytes, `in` and `out`") {
                [.init([("direction", "in")], self.bytesIn.value), .init([("direction", "out")], self.bytesOut.value)]
            },
            .counter(nil, json: "messages_in", help: "", messagesIn),
            .counter(nil, json: "messages_out", help: "", messagesOut),
            .counter(nil, json: "bytes_in", help: "", bytesIn),
            .counter(nil, json: "bytes_out", help: "", bytesOut),
            .counter("webrtc_cluster_nats_dropped_total", json: "dropped",
                     help: "cluster messages dropped: over `cluster.buffer` while NATS is unreachable or slow, or over its max_payload", dropped),
            .counter("webrtc_cluster_nats_server_errors_total", json: "server_errors", help: "`-ERR` lines from the NATS server", serverErrors),
        ]
    }
}

/// A small NATS client on SwiftNIO: CONNECT with user/password or token, TLS when asked, PING/PONG
/// keepalive, the server's `max_payload`, reconnection with backoff across the server list,
/// resubscription after a reconnect, and a bounded buffer while the link is down. Core NATS only (no
/// JetStream, no headers): what the cluster needs.
///
/// Everything mutable lives on one event loop (`NIOLoopBoundBox`); the public methods may be called from
/// any thread and keep the order in which one thread called them. Handlers run on that loop, in the order
/// the server delivered the messages.
public final class NATSClient: Sendable {
    public enum Event: Sendable, Equatable {
        /// Connected (again) and subscribed: the first time and after every reconnect.
        case connected(server: String)
        case disconnected
        /// The server refused the connection or reported a protocol error (`-ERR 'Authorization Violation'`…).
        case serverError(String)
    }

    public let configuration: NATSClientConfiguration
    public let eventLoop: EventLoop
    public let stats = NATSStats()
    private let core: NIOLoopBoundBox<Core>
    /// The server's max_payload (1 MiB until it says otherwise), for checks off the loop.
    private let maxPayloadValue = Atomic<Int>(1 << 20)
    let logger: Logger

    public init(configuration: NATSClientConfiguration, eventLoop: EventLoop, logger: Logger,
                onEvent: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        core = NIOLoopBoundBox.makeBoxSendingValue(Core(onEvent: onEvent), eventLoop: eventLoop)
    }

    public var maxPayload: Int { maxPayloadValue.load(ordering: .relaxed) }

    /// Starts connecting (in the background: `.connected` is reported when done, and the client keeps
    /// trying while no server answers).
    public func start() {
        onLoop { $0.connect(self) }
    }

    /// Closes the connection for good.
    public func close() async {
        let promise = eventLoop.makePromise(of: Void.self)
        onLoop { core in
            core.closed = true
            core.reconnectTask?.cancel()
            core.pingTask?.cancel()
            if let channel = core.channel {
                core.flushOutbound(self)
                channel.close(promise: nil)
                channel.closeFuture.whenComplete { _ in promise.succeed() }
            } else {
                promise.succeed()
            }
        }
        try? await promise.futureResult.get()
    }

    /// Subscribes to `subject` (wildcards allowed); `handler` runs on the client's loop for every message,
    /// now and after reconnects. Returns the subscription id.
    @discardableResult
    public func subscribe(_ subject: String, handler: @escaping @Sendable (NATSMessage) -> Void) -> UInt64 {
        precondition(NATSClientOps.isValidSubject(subject, wildcards: true), "invalid NATS subject \(subject)")
        let sid = Self.nextSID.add(1, ordering: .relaxed).newValue
        onLoop { core in
            core.subscriptions[sid] = (subject, handler)
            if core.isConnected {
                NATSClientOps.sub(subject, sid: sid, into: &core.outbound)
                core.scheduleFlush(self)
            }
        }
        return sid
    }

    private static let nextSID = Atomic<UInt64>(0)

    public func unsubscribe(_ sid: UInt64) {
        onLoop { core in
            guard core.subscriptions.removeValue(forKey: sid) != nil, core.isConnected else { return }
            NATSClientOps.unsub(sid: sid, into: &core.outbound)
            core.scheduleFlush(self)
        }
    }

    /// Publishes `head` followed by `body` (one message) on `subject`. False (and counted as dropped) when
    /// it is over the server's max_payload; otherwise it is sent, or held in the bounded buffer while the
    /// link is down or the socket cannot take more (and dropped, counted, if that is full).
    ///
    /// Any thread may publish: publications are appended, in call order, to one staged buffer under a lock,
    /// and the client's loop takes them in one batch at the end of its tick (one hop and one write per
    /// batch, not per message).
    @discardableResult
    public func publish(_ subject: String, head: String = "", _ body: ByteBuffer) -> Bool {
        let size = head.utf8.count + body.readableBytes
        guard size <= maxPayload else {
            stats.dropped.add()
            return false
        }
        let cost = size + subject.utf8.count + 24
        if !canWrite.load(ordering: .relaxed), heldBytes.load(ordering: .relaxed) + cost > configuration.bufferLimit {
            stats.dropped.add()
            return true
        }
        let schedule = staged.withLock { s -> Bool in
            NATSClientOps.pub(subject, head: head, payload: body, into: &s.buffer)
            guard !s.scheduled else { return false }
            s.scheduled = true
            return true
        }
        heldBytes.add(cost, ordering: .relaxed)
        stats.messagesOut.add()
        stats.bytesOut.add(size)
        if schedule { eventLoop.execute { [core] in core.value.takeStaged(self) } }
        return true
    }

    @discardableResult
    public func publish(_ subject: String, _ bytes: some Collection<UInt8>) -> Bool {
        publish(subject, ByteBuffer(bytes: bytes))
    }

    private struct Staged {
        var buffer = ByteBuffer()
        var scheduled = false
    }

    /// Publications not yet taken by the loop.
    private let staged = Mutex(Staged())
    /// Bytes published and not yet handed to the socket; `bufferLimit` applies to them while writing is not possible.
    private let heldBytes = Atomic<Int>(0)
    /// Connected, and the socket takes more.
    private let canWrite = Atomic<Bool>(false)

    private func onLoop(_ body: @escaping @Sendable (Core) -> Void) {
        if eventLoop.inEventLoop {
            body(core.value)
        } else {
            eventLoop.execute { [core] in body(core.value) }
        }
    }

    // MARK: Loop-confined state

    final class Core {
        let onEvent: @Sendable (Event) -> Void
        var subscriptions: [UInt64: (subject: String, handler: @Sendable (NATSMessage) -> Void)] = [:]
        var channel: Channel?
        var phase = Phase.idle
        var isConnected: Bool { phase == .connected }
        /// What waits to be written: publications (and, connected, SUBs) of this tick, or everything
        /// published while the link is down.
        var outbound = ByteBuffer()
        var flushScheduled = false
        var serverIndex = 0
        var attempts = 0
        var everConnected = false
        var pingsOut = 0
        var pingTask: Scheduled<Void>?
        var reconnectTask: Scheduled<Void>?
        var closed = false

        enum Phase { case idle, awaitingInfo, awaitingTLS, awaitingPong, connected }

        init(onEvent: @escaping @Sendable (Event) -> Void) { self.onEvent = onEvent }

        /// The loop takes what was published since the last time, and writes it if it can.
        func takeStaged(_ client: NATSClient) {
            let batch = client.staged.withLock { s -> ByteBuffer in
                s.scheduled = false
                let b = s.buffer
                s.buffer = ByteBuffer()
                return b
            }
            if outbound.readableBytes == 0 {
                outbound = batch
            } else {
                outbound.writeImmutableBuffer(batch)
            }
            flushOutbound(client)
        }

        /// Writes what waits at the end of this tick: one write for every publication of the tick.
        func scheduleFlush(_ client: NATSClient) {
            guard !flushScheduled else { return }
            flushScheduled = true
            client.eventLoop.assumeIsolated().execute { [self] in
                flushScheduled = false
                flushOutbound(client)
            }
        }

        func flushOutbound(_ client: NATSClient) {
            guard isConnected, let channel, outbound.readableBytes > 0, channel.isWritable else { return }
            client.heldBytes.subtract(outbound.readableBytes, ordering: .relaxed)
            channel.writeAndFlush(outbound, promise: nil)
            outbound = ByteBuffer()
            client.canWrite.store(channel.isWritable, ordering: .relaxed)
        }

        // MARK: Connecting

        func connect(_ client: NATSClient) {
            guard !closed, channel == nil, phase == .idle else { return }
            let servers = client.configuration.servers
            guard !servers.isEmpty else { return }
            let server = servers[serverIndex % servers.count]
            serverIndex += 1
            attempts += 1
            phase = .awaitingInfo
            let loop = client.eventLoop
            ClientBootstrap(group: loop)
                .connectTimeout(client.configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.writeBufferWaterMark, value: .init(low: client.configuration.bufferLimit / 2,
                                                                   high: client.configuration.bufferLimit))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NATSServerOpDecoder()))
                        try channel.pipeline.syncOperations.addHandler(NATSConnectionHandler(client: client, server: server))
                    }
                }
                .connect(host: server.host, port: server.port)
                .assumeIsolated()
                .whenComplete { [self] result in
                    switch result {
                    case .success(let channel):
                        if closed {
                            channel.close(promise: nil)
                            return
                        }
                        self.channel = channel
                    case .failure(let error):
                        client.logger.debug("NATS connect failed", metadata: ["server": "\(server)", "error": "\(error)"])
                        phase = .idle
                        scheduleReconnect(client)
                    }
                }
        }

        func scheduleReconnect(_ client: NATSClient) {
            guard !closed, reconnectTask == nil else { return }
            let c = client.configuration
            // Every server once at once, then growing delays.
            let round = max(0, attempts - c.servers.count)
            let base = round == 0 ? 0 : min(c.maxReconnectWait.nanoseconds,
                                              c.reconnectWait.nanoseconds << min(Int64(round - 1), 20))
            let jittered = base == 0 ? 0 : Int64(Double(base) * Double.random(in: 0.8...1.2))
            reconnectTask = client.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(jittered)) { [self] in
                reconnectTask = nil
                connect(client)
            }
        }

        func received(_ op: NATSServerOp, on channel: Channel, server: NATSServerURL, _ client: NATSClient) {
            switch op {
            case .msg(let subject, let sid, let reply, let payload):
                client.stats.messagesIn.add()
                client.stats.bytesIn.add(payload.readableBytes)
                subscriptions[sid]?.handler(NATSMessage(subject: subject, reply: reply, payload: payload))
            case .ping:
                channel.writeAndFlush(ByteBuffer(string: "PONG\r\n"), promise: nil)
            case .pong:
                if phase == .awaitingPong {
                    connected(channel, server: server, client)
                } else {
                    pingsOut = 0
                }
            case .ok:
                break
            case .err(let text):
                client.stats.serverErrors.add()
                client.logger.warning("NATS server error", metadata: ["server": "\(server)", "error": "\(text)"])
                onEvent(.serverError(text))
            case .info(let json):
                info(json, channel: channel, server: server, client)
            }
        }

        private struct ServerInfo: Decodable {
            var max_payload: Int?
            var tls_required: Bool?
            var tls_available: Bool?
            var auth_required: Bool?
        }

        private func info(_ json: ByteBuffer, channel: Channel, server: NATSServerURL, _ client: NATSClient) {
            let parsed = try? JSONDecoder().decode(ServerInfo.self, from: Data(json.readableBytesView))
            if let max = parsed?.max_payload, max > 0 { client.maxPayloadValue.store(max, ordering: .relaxed) }
            guard phase == .awaitingInfo else { return }  // a later INFO (cluster changes): nothing to do
            let c = client.configuration
            let serverWantsTLS = parsed?.tls_required ?? false
            let wantTLS = serverWantsTLS || server.requiresTLS || c.requireTLS
            guard wantTLS else {
                sendConnect(channel, server: server, tls: false, client)
                return
            }
            guard serverWantsTLS || (parsed?.tls_available ?? false) else {
                client.logger.error("NATS server does not offer TLS, which is required", metadata: ["server": "\(server)"])
                onEvent(.serverError("TLS required but not offered by \(server)"))
                channel.close(promise: nil)
                return
            }
            do {
                let context = try NIOSSLContext(configuration: c.tls ?? .makeClientConfiguration())
                let hostname = IPAddressText.isIPAddress(server.host) ? nil : server.host
                let handler = try NIOSSLClientHandler(context: context, serverHostname: hostname)
                try channel.pipeline.syncOperations.addHandler(handler, position: .first)
                phase = .awaitingTLS
            } catch {
                client.logger.error("NATS TLS setup failed", metadata: ["server": "\(server)", "error": "\(error)"])
                channel.close(promise: nil)
            }
        }

        func tlsHandshakeCompleted(_ channel: Channel, server: NATSServerURL, _ client: NATSClient) {
            guard phase == .awaitingTLS else { return }
            sendConnect(channel, server: server, tls: true, client)
        }

        private struct ConnectOptions: Encodable {
            var verbose = false
            var pedantic = false
            var tls_required: Bool
            var name: String
            var lang = "swift"
            var version = "1.0"
            var `protocol` = 1
            var echo: Bool
            var user: String?
            var pass: String?
            var auth_token: String?
        }

        private func sendConnect(_ channel: Channel, server: NATSServerURL, tls: Bool, _ client: NATSClient) {
            let c = client.configuration
            var options = ConnectOptions(tls_required: tls, name: c.name, echo: c.echo)
            if let user = server.user ?? c.user {
                if server.user != nil, server.password == nil {
                    options.auth_token = user  // nats://TOKEN@host
                } else {
                    options.user = user
                    options.pass = server.user != nil ? server.password : c.password
                }
            } else if let token = c.token {
                options.auth_token = token
            }
            let encoder = JSONEncoder()
            let json = (try? encoder.encode(options)) ?? Data("{}".utf8)
            var out = channel.allocator.buffer(capacity: json.count + 16)
            out.writeStaticString("CONNECT ")
            out.writeBytes(json)
            out.writeStaticString("\r\nPING\r\n")
            phase = .awaitingPong
            channel.writeAndFlush(out, promise: nil)
        }

        private func connected(_ channel: Channel, server: NATSServerURL, _ client: NATSClient) {
            self.channel = channel
            phase = .connected
            if everConnected { client.stats.reconnects.add() }
            everConnected = true
            attempts = 0
            pingsOut = 0
            client.stats.connectedFlag.store(true, ordering: .relaxed)
            // Subscriptions first, then what was published meanwhile, in order.
            var subs = channel.allocator.buffer(capacity: 64 * subscriptions.count)
            for (sid, s) in subscriptions.sorted(by: { $0.key < $1.key }) { NATSClientOps.sub(s.subject, sid: sid, into: &subs) }
            client.heldBytes.subtract(outbound.readableBytes, ordering: .relaxed)
            subs.writeImmutableBuffer(outbound)
            outbound = ByteBuffer()
            channel.writeAndFlush(subs, promise: nil)
            client.canWrite.store(channel.isWritable, ordering: .relaxed)
            schedulePing(client, server: server)
            client.logger.info("NATS connected", metadata: ["server": "\(server)"])
            onEvent(.connected(server: "\(server)"))
        }

        /// The keepalive: a PING every `pingInterval`; `maxPingsOut` unanswered ones close the link.
        private func schedulePing(_ client: NATSClient, server: NATSServerURL) {
            pingTask = client.eventLoop.assumeIsolated().scheduleTask(in: client.configuration.pingInterval) { [self] in
                guard isConnected, let channel = self.channel else { return }
                if pingsOut >= client.configuration.maxPingsOut {
                    client.logger.warning("NATS server stopped answering PINGs; reconnecting", metadata: ["server": "\(server)"])
                    channel.close(promise: nil)
                    return
                }
                pingsOut += 1
                channel.writeAndFlush(ByteBuffer(string: "PING\r\n"), promise: nil)
                schedulePing(client, server: server)
            }
        }

        func disconnected(_ client: NATSClient, server: NATSServerURL) {
            let wasConnected = isConnected
            channel = nil
            phase = .idle
            pingTask?.cancel()
            pingTask = nil
            client.stats.connectedFlag.store(false, ordering: .relaxed)
            client.canWrite.store(false, ordering: .relaxed)
            if wasConnected {
                client.logger.warning("NATS connection lost; reconnecting", metadata: ["server": "\(server)"])
                onEvent(.disconnected)
            }
            scheduleReconnect(client)
        }

        func writabilityChanged(_ client: NATSClient, writable: Bool) {
            client.canWrite.store(isConnected && writable, ordering: .relaxed)
            if writable { flushOutbound(client) }
        }
    }

    fileprivate var loopCore: Core { core.value }
}

/// The client's handler in its connection's pipeline: hands the server's operations to the client.
private final class NATSConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = NATSServerOp

    let client: NATSClient
    let server: NATSServerURL

    init(client: NATSClient, server: NATSServerURL) {
        self.client = client
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client.loopCore.received(unwrapInboundIn(data), on: context.channel, server: server, client)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            client.loopCore.tlsHandshakeCompleted(context.channel, server: server, client)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        client.loopCore.writabilityChanged(client, writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.loopCore.disconnected(client, server: server)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        client.logger.debug("NATS connection error", metadata: ["server": "\(server)", "error": "\(error)"])
        context.close(promise: nil)
    }
}

enum IPAddressText {
    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
