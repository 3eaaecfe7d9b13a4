// signaling-load: a load client for the signaling half, in the spirit of nextcloud-spreed-signaling's
// `client`. It opens N authenticated WebSocket connections in rooms of K peers, then sends M directed
// messages per second in total for D seconds, and reports delivered messages/s, delivery latency
// percentiles and the server's RSS per connection (read from /proc/PID/status).
//
// It is written on plain SwiftNIO channel handlers (no async per message) so that the client costs as
// little CPU as possible on the machine it shares with the server.
import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

@main
struct SignalingLoad: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "signaling-load",
                                                    abstract: "Load client for webrtc-server's WebSocket signaling.")

    @Option(help: "Server host.") var host = "127.0.0.1"
    @Option(help: "Server signaling port.") var port = 8080
    @Option(help: "Connections to open.") var connections = 1000
    @Option(help: "Peers per room.") var roomSize = 10
    @Option(help: "Directed messages per second, in total (0 = connect, measure memory, stop).") var rate = 0
    @Option(help: "Seconds to send for.") var duration = 10
    @Option(help: "Username to authenticate with (duplicates are allowed by default).") var user = "bench"
    @Option(help: "Password.") var password = "bench"
    @Option(help: "PID of the server, for its RSS.") var serverPid: Int?
    @Option(help: "Event loop threads for the client.") var threads = 1
    @Option(help: "Connections being set up at once.") var connectConcurrency = 256
    @Option(help: "Seconds allowed for connecting everything.") var connectTimeout = 120

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { try? group.syncShutdownGracefully() }
        let loops = (0..<threads).map { _ in group.next() }
        let states = loops.map { LoopState(loop: $0) }
        let rssBefore = serverPid.flatMap(rssKiB)
        print("server RSS before: \(rssBefore.map { "\($0) KiB" } ?? "n/a")")

        // Phase 1: connect and authenticate, `connectConcurrency` at a time.
        let started = Date()
        let authenticated = NIOLockedValueBox(0)
        let failed = NIOLockedValueBox(0)
        let slots = DispatchSemaphore(value: connectConcurrency)
        for i in 0..<connections {
            slots.wait()
            let state = states[i % threads]
            let room = "load-\(i / roomSize)"
            let done: @Sendable (Bool) -> Void = { ok in
                if ok { authenticated.withLockedValue { $0 += 1 } } else { failed.withLockedValue { $0 += 1 } }
                slots.signal()
            }
            connect(state: state, room: room, done: done)
            if Date().timeIntervalSince(started) > Double(connectTimeout) { break }
        }
        for _ in 0..<connectConcurrency { slots.wait() }
        for _ in 0..<connectConcurrency { slots.signal() }  // a semaphore must end at its initial value
        let connectSeconds = Date().timeIntervalSince(started)
        let ok = authenticated.withLockedValue { $0 }
        print(String(format: "connected and authenticated: %d of %d in %.1f s (%d failed)", ok, connections, connectSeconds,
                     failed.withLockedValue { $0 }))
        Thread.sleep(forTimeInterval: 3)  // let the server settle (allocator, joined broadcasts) before reading RSS
        if let pid = serverPid, let before = rssBefore, let after = rssKiB(pid), ok > 0 {
            print(String(format: "server RSS after: %d KiB; per idle connection: %.1f KiB", after, Double(after - before) / Double(ok)))
        }

        // Phase 2: directed messages at `rate` per second in total.
        if rate > 0 {
            let serverCPU0 = serverPid.flatMap(cpuSeconds)
            let clientCPU0 = ownCPUSeconds()
            let perLoop = Double(rate) / Double(threads)
            for s in states { try s.loop.submit { s.startSending(ratePerSecond: perLoop) }.wait() }
            Thread.sleep(forTimeInterval: Double(duration))
            for s in states { try s.loop.submit { s.stopSending() }.wait() }
            let serverCPU = serverPid.flatMap(cpuSeconds).flatMap { now in serverCPU0.map { now - $0 } }
            let clientCPU = ownCPUSeconds() - clientCPU0
            Thread.sleep(forTimeInterval: 2)  // drain what is in flight
            var sent = 0, delivered = 0, errors = 0
            var latencies: [UInt32] = []
            for s in states {
                let (a, b, c, l) = try s.loop.submit { (s.sent, s.delivered, s.errors, s.latenciesMicros) }.wait()
                sent += a
                delivered += b
                errors += c
                latencies += l
            }
            latencies.sort()
            func pct(_ p: Double) -> Double {
                latencies.isEmpty ? .nan : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000
            }
            print(String(format: "sent %d, delivered %d (%.2f%% lost), error events %d", sent, delivered,
                         sent == 0 ? 0 : 100 * Double(sent - delivered) / Double(sent), errors))
            print(String(format: "delivered/s: %.0f over %d s", Double(delivered) / Double(duration), duration))
            print(String(format: "latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", pct(0.5), pct(0.9), pct(0.99),
                         latencies.last.map { Double($0) / 1000 } ?? .nan))
            if let cpu = serverCPU {
                print(String(format: "server CPU: %.2f s over %d s (%.0f%% of one core), %.1f µs per delivered message",
                             cpu, duration, 100 * cpu / Double(duration), delivered == 0 ? 0 : 1e6 * cpu / Double(delivered)))
            }
            print(String(format: "client CPU: %.2f s (%.0f%% of one core)", clientCPU, 100 * clientCPU / Double(duration)))
            if clientCPU / Double(duration * threads) >= 0.85 {
                // Its loops both send and time deliveries: near saturation, latency includes their own queues.
                print("warning: the load client's loop was near saturation; the latency figures include its own queueing")
            }
            if let pid = serverPid, let rss = rssKiB(pid) { print("server RSS at end: \(rss) KiB") }
        }
        for s in states { try? s.loop.submit { s.closeAll() }.wait() }
    }

    func connect(state: LoopState, room: String, done: @escaping @Sendable (Bool) -> Void) {
        let host = self.host, port = self.port
        let auth = #"{"event":"authenticate","data":{"username":"\#(user)","password":"\#(password)"}}"#
        let bootstrap = ClientBootstrap(group: state.loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                let request = UpgradeRequestHandler(host: host, port: port, path: "/websocket/\(room)")
                let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 20, automaticErrorHandling: false) { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        // Frames are read and written on the raw bytes, in front of NIO's frame codec (as the
                        // server does): its decoder comes out, its encoder stays unused.
                        let sync = channel.pipeline.syncOperations
                        sync.removeHandler(
                            context: try sync.context(handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self), promise: nil)
                        let encoder = try sync.handler(type: WebSocketFrameEncoder.self)
                        try sync.addHandler(LoadConnection(state: state, authenticate: auth, onAuthenticated: done),
                                            position: .before(encoder))
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(withClientUpgrade: (
                        upgraders: [upgrader],
                        completionHandler: { context in context.pipeline.removeHandler(name: "upgrade-request", promise: nil) }))
                    try channel.pipeline.syncOperations.addHandler(request, name: "upgrade-request")
                }
            }
        bootstrap.connect(host: host, port: port).whenFailure { _ in done(false) }
    }
}

/// utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15, in clock ticks).
func cpuSeconds(_ pid: Int) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func rssKiB(_ pid: Int) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }
    return nil
}

/// Per event loop: its connections, the send schedule, and the counters (touched on that loop only).
final class LoopState: @unchecked Sendable {
    let loop: EventLoop
    var connections: [LoadConnection] = []
    var sent = 0, delivered = 0, errors = 0
    var latenciesMicros: [UInt32] = []
    var timer: RepeatedTask?
    var cursor = 0
    var credit = 0.0
    /// When the send timer last ran (on `loop` only).
    var lastTick = NIODeadline.now()

    init(loop: EventLoop) { self.loop = loop }

    func startSending(ratePerSecond: Double) {
        latenciesMicros.reserveCapacity(Int(ratePerSecond * 60))
        lastTick = NIODeadline.now()
        var ready = connections.filter { $0.target != nil }
        var readyAt = NIODeadline.now()
        timer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(2), delay: .milliseconds(2)) { [self] _ in
            // Credit by the time that really passed, so late ticks do not lower the rate.
            let now = NIODeadline.now()
            credit += ratePerSecond * Double((now - lastTick).nanoseconds) / 1e9
            lastTick = now
            // Who can send changes only on joined/left: rebuilt once a second, not every tick.
            if now - readyAt > .seconds(1) {
                ready = connections.filter { $0.target != nil }
                readyAt = now
            }
            guard !ready.isEmpty else { return }
            var touched: [LoadConnection] = []
            while credit >= 1 {
                credit -= 1
                cursor = (cursor + 1) % ready.count
                let c = ready[cursor]
                c.sendDirected()
                if !c.needsFlush { c.needsFlush = true; touched.append(c) }
            }
            for c in touched { c.flush() }
        }
    }

    func stopSending() { timer?.cancel() }

    func closeAll() { for c in connections { c.close() } }
}

/// Sends the upgrade GET once connected.
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    let host: String, port: Int, path: String

    init(host: String, port: Int, path: String) { self.host = host; self.port = port; self.path = path }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(host):\(port)")
        headers.add(name: "Content-Length", value: "0")
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // a non-101 answer: the connection fails
}

/// One upgraded WebSocket: authenticates, learns its room's peers, sends and times directed messages.
/// Frames are built and parsed on the connection's bytes (no `WebSocketFrame` per message), so that the
/// client costs the machine it shares with the server as little as possible.
final class LoadConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let state: LoopState
    let authenticate: String
    var onAuthenticated: (@Sendable (Bool) -> Void)?
    var context: ChannelHandlerContext?
    var members: [String] = []
    var target: String? { didSet { targetBytes = target.map { Array($0.utf8) } ?? [] } }
    var targetBytes: [UInt8] = []
    var needsFlush = false
    /// Masking keys (RFC 6455 §5.3) from a cheap generator: the system one costs a getrandom(2) per
    /// frame, CPU the load client takes from the server it shares the machine with.
    var rng = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
    /// Bytes of a server frame that has not fully arrived yet.
    var partial = ByteBuffer()

    init(state: LoopState, authenticate: String, onAuthenticated: @escaping @Sendable (Bool) -> Void) {
        self.state = state
        self.authenticate = authenticate
        self.onAuthenticated = onAuthenticated
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        state.connections.append(self)
        write(opcode: 0x1) { $0.writeString(self.authenticate) }
        context.flush()
    }

    /// Writes one masked client frame (FIN set) whose payload `body` appends to the buffer.
    func write(opcode: UInt8, _ body: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        var payload = context.channel.allocator.buffer(capacity: 256)
        body(&payload)
        let n = payload.readableBytes
        var frame = context.channel.allocator.buffer(capacity: n + 14)
        frame.writeInteger(0x80 | opcode)
        if n < 126 {
            frame.writeInteger(0x80 | UInt8(n))
        } else if n <= 0xFFFF {
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(n))
        } else {
            frame.writeInteger(UInt8(0x80 | 127))
            frame.writeInteger(UInt64(n))
        }
        let key = UInt32(truncatingIfNeeded: rng.next())
        frame.writeInteger(key)
        let keyBytes = withUnsafeBytes(of: key.bigEndian) { Array($0) }
        frame.writeBuffer(&payload)
        frame.withUnsafeMutableReadableBytes { b in
            let start = b.count - n
            for i in 0..<n { b[start + i] ^= keyBytes[i & 3] }
        }
        context.write(wrapOutboundOut(frame), promise: nil)
    }

    func flush() {
        needsFlush = false
        context?.flush()
    }

    static let directedStart = Array(#"{"event":"m","to":""#.utf8)
    static let directedMiddle = Array(#"","data":{"t":"#.utf8)

    func sendDirected() {
        guard target != nil else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        write(opcode: 0x1) { b in
            b.writeBytes(Self.directedStart)
            b.writeBytes(self.targetBytes)
            b.writeBytes(Self.directedMiddle)
            b.writeString(String(now))
            b.writeStaticString("}}")
        }
        state.sent += 1
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if partial.readableBytes > 0 {
            partial.writeBuffer(&input)
            input = partial
            partial = ByteBuffer()
        }
        // Server frames: unmasked, unfragmented (this server never fragments).
        while input.readableBytes >= 2 {
            let start = input.readerIndex
            let b0 = input.getInteger(at: start, as: UInt8.self)!, b1 = input.getInteger(at: start + 1, as: UInt8.self)!
            var length = Int(b1 & 0x7F), header = 2
            if length == 126 {
                guard let l = input.getInteger(at: start + 2, as: UInt16.self) else { break }
                length = Int(l)
                header = 4
            } else if length == 127 {
                guard let l = input.getInteger(at: start + 2, as: UInt64.self) else { break }
                length = Int(l)
                header = 10
            }
            guard input.readableBytes >= header + length else { break }
            input.moveReaderIndex(forwardBy: header)
            let payload = input.readSlice(length: length)!
            switch b0 & 0x0F {
            case 0x1:
                received(payload)
            case 0x9:
                write(opcode: 0xA) { $0.writeImmutableBuffer(payload) }
                context.flush()
            case 0x8:
                context.close(promise: nil)
                return
            default:
                break
            }
        }
        if input.readableBytes > 0 { partial.writeBuffer(&input) }
    }

    static let fromPrefix = Array(#"{"from":"#.utf8)
    static let timeKey = Array(#""t":"#.utf8)

    func received(_ payload: ByteBuffer) {
        let bytes = payload.readableBytesView
        if bytes.starts(with: Self.fromPrefix) {
            // A directed message: {"from":"…","event":"m","to":"…","data":{"t":NANOS}}
            if let t = Self.number(after: Self.timeKey, in: bytes) {
                let now = DispatchTime.now().uptimeNanoseconds
                state.delivered += 1
                state.latenciesMicros.append(UInt32(min(UInt64(UInt32.max), (now &- t) / 1000)))
            }
            return
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let event = json["event"] as? String else { return }
        let data = json["data"] as? [String: Any]
        switch event {
        case "authenticated":
            let peers = (data?["peers"] as? [[String: Any]]) ?? []
            members = peers.compactMap { $0["peer_id"] as? String }
            target = members.randomElement()
            onAuthenticated?(true)
            onAuthenticated = nil
        case "joined":
            if let id = data?["peer_id"] as? String {
                members.append(id)
                if target == nil { target = id }
            }
        case "left":
            if let id = data?["peer_id"] as? String {
                members.removeAll { $0 == id }
                if target == id { target = members.randomElement() }
            }
        case "error", "unauthorized":
            state.errors += 1
            if onAuthenticated != nil { onAuthenticated?(false); onAuthenticated = nil }
        default: break
        }
    }

    /// The decimal number after the last occurrence of `key` (the send time is the message's last member).
    static func number(after key: [UInt8], in bytes: ByteBufferView) -> UInt64? {
        let b = Array(bytes)
        var i = b.count - key.count
        while i >= 0 {
            if b[i] == key[0], b[i..<(i + key.count)].elementsEqual(key) {
                var j = i + key.count, v: UInt64 = 0
                while j < b.count, b[j] >= 0x30, b[j] <= 0x39 { v = v * 10 + UInt64(b[j] - 0x30); j += 1 }
                return v
            }
            i -= 1
        }
        return nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        if onAuthenticated != nil { onAuthenticated?(false); onAuthenticated = nil }
        state.connections.removeAll { $0 === self }
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }

    func close() { context?.close(promise: nil) }
}

/// SplitMix64 (Steele, Lea, Flood 2014): fast, good enough for masking keys in a load generator.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
