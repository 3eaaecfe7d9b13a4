import Auth
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization

/// The hub's handle on one WebSocket. Whoever sends to this peer writes the frame straight into its
/// NIO channel; frames written during one event-loop tick share one flush (`TickFlusher`). A sender
/// never waits for the receiver: the channel's write buffer is the peer's bounded queue, and a peer
/// whose buffer is over its high-water mark is a slow consumer and is disconnected instead of growing
/// memory. What only the connection's event loop may touch is in a loop-bound box (checked on access).
public final class PeerConnection: Sendable {
    /// Why and how the connection is being closed (the last event sent before the close frame).
    struct CloseRequest: Sendable {
        let finalEvent: String?
        let reason: String
        let code: WebSocketErrorCode
        let at: ContinuousClock.Instant
    }

    let id: UInt64
    /// The client's address as the auth throttle counts it (behind a trusted proxy, from its
    /// X-Forwarded-For); nil for a non-IP socket.
    let source: SourceKey?
    let opened: ContinuousClock.Instant
    let channel: any Channel
    private let stats: SignalingStats
    private let flusher: TickFlusher
    private let closeRequest = Mutex<CloseRequest?>(nil)
    private let closing = Atomic<Bool>(false)
    /// Milliseconds since `opened` of the last message received (idle timeout).
    private let lastActivity = Atomic<Int64>(0)
    /// Milliseconds since `opened` of the last keepalive ping, and whether its pong is still due.
    private let lastPing = Atomic<Int64>(0)
    let awaitingPong = Atomic<Bool>(false)
    private let authenticatedFlag = Atomic<Bool>(false)
    /// Whether the peer is leaving for good (1): a close frame with 1000 or 1001, `leave`, or a close by the
    /// server that ends the session (kicked, replaced, refused…). Otherwise (0) the socket just went away —
    /// no close frame, a network error, another close code, a keepalive timeout — and the session may be
    /// held for a resume (`signaling.resume_window`).
    private let leavingFlag = Atomic<Bool>(false)

    /// Where encoded frames are written.
    private enum Output {
        /// The channel itself (a connection opened on a bare channel, as in tests).
        case channel
        /// The WebSocket's own output (its frame handler, next to the socket: frames pass no other handler).
        case socket(any WebSocketOutput)
        /// The connection is gone: frames are dropped (NIO's unused frame encoder may still be in the
        /// pipeline for a moment, and must never see one).
        case closed
    }
    /// What only the connection's event loop touches.
    private struct LoopState {
        var output = Output.channel
        var flushScheduled = false
        var closeFrameSent = false
    }
    private let onLoopState: NIOLoopBoundBox<LoopState>

    /// Bytes a payload handed to `send(_:)` should leave free in front of its readable bytes: the frame
    /// header is then written there instead of into a second buffer.
    public static let payloadHeadroom = WebSocketFraming.maxServerHeader

    init(id: UInt64, source: SourceKey?, channel: any Channel, stats: SignalingStats, flusher: TickFlusher) {
        self.id = id
        self.source = source
        self.channel = channel
        self.stats = stats
        self.flusher = flusher
        self.opened = .now
        self.onLoopState = .makeBoxSendingValue(LoopState(), eventLoop: channel.eventLoop)
    }

    private var loop: any EventLoop { channel.eventLoop }

    /// On the loop: frames go to `output` from now on.
    func attach(_ output: any WebSocketOutput) { onLoopState.value.output = .socket(output) }

    /// On the loop, when the channel goes inactive or the handler is removed: later frames are dropped.
    func detach() { onLoopState.value.output = .closed }

    /// On the loop: whether our close frame has been written (nothing is written after it).
    var closeFrameSent: Bool { onLoopState.value.closeFrameSent }


    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }

    /// Writes `text` as one text frame; false if the connection is closing or cannot keep up (then it
    /// is closed as a slow consumer).
    @discardableResult
    func send(_ text: String) -> Bool { send(ByteBuffer(string: text)) }

    /// Writes `payload` (UTF-8 JSON text) as one text frame. Passed owned, a forwarded message's buffer
    /// is unique here and gets its frame header in place.
    @discardableResult
    func send(_ payload: consuming ByteBuffer) -> Bool {
        guard !closing.load(ordering: .relaxed) else { return false }
        guard channel.isWritable else {
            stats.slowConsumers.add()
            close(finalEvent: nil, reason: "slow consumer", code: .policyViolation, keepsSession: true)
            return false
        }
        let frame = WebSocketFraming.frame(.text, payload)
        if loop.inEventLoop { writeFrame(frame) } else { loop.execute { self.writeFrame(frame) } }
        return true
    }

    /// On the loop: `payload` as one frame of kind `opcode`, flushed at the end of this tick.
    func write(_ opcode: WebSocketOpcode, _ payload: ByteBuffer) {
        writeFrame(WebSocketFraming.frame(opcode, payload))
    }

    /// On the loop: queue an encoded frame and flush once at the end of this tick.
    private func writeFrame(_ frame: ByteBuffer) {
        let state = onLoopState.value
        guard !state.closeFrameSent else { return }
        switch state.output {
        case .socket(let output): output.write(frame: frame)
        case .channel: channel.write(frame, promise: nil)
        case .closed: return
        }
        guard !state.flushScheduled else { return }
        onLoopState.value.flushScheduled = true
        flusher.add(self)
    }

    /// On the loop, from the tick's flusher: what was written this tick goes to the socket.
    func flushNow() {
        onLoopState.value.flushScheduled = false
        switch onLoopState.value.output {
        case .socket(let output): output.flush()
        case .channel: channel.flush()
        case .closed: break
        }
    }

    /// Ends the connection: `finalEvent` (if any), then a close frame with `code`; the connection is
    /// cut when the client answers, or by the hub's sweeper after `closeGrace`. `keepsSession`: the
    /// connection failed, the peer did not leave (a keepalive timeout, a slow consumer), so its session
    /// may be held for a resume; otherwise the peer leaves.
    func close(finalEvent: String?, reason: String, code: WebSocketErrorCode = .normalClosure, keepsSession: Bool = false) {
        let first = closeRequest.withLock { r -> Bool in
            guard r == nil else { return false }
            r = CloseRequest(finalEvent: finalEvent, reason: reason, code: code, at: .now)
            return true
        }
        guard first else { return }
        if !keepsSession { markLeaving() }
        closing.store(true, ordering: .relaxed)
        onLoop {
            if let e = finalEvent { self.write(.text, ByteBuffer(string: e)) }
            self.sendCloseFrame(code: code, reason: reason)
        }
    }

    /// On the loop: the close frame (RFC 6455 §5.5.1: code, then a UTF-8 reason up to 123 bytes).
    func sendCloseFrame(code: WebSocketErrorCode, reason: String) {
        guard !closeFrameSent else { return }
        var data = channel.allocator.buffer(capacity: 2 + min(reason.utf8.count, 123))
        data.write(webSocketErrorCode: code)
        data.writeBytes(reason.utf8.prefix(123))
        write(.connectionClose, data)
        onLoopState.value.closeFrameSent = true
    }

    /// Sends a keepalive ping; the pong must arrive before the next one.
    func ping(now: ContinuousClock.Instant) {
        lastPing.store(millis(now), ordering: .relaxed)
        awaitingPong.store(true, ordering: .relaxed)
        onLoop { self.write(.ping, ByteBuffer()) }
    }

    /// Cuts the TCP connection without ceremony (a peer that ignores our close frame).
    func forceClose() { channel.close(promise: nil) }

    var pendingClose: CloseRequest? { closeRequest.withLock { $0 } }
    var isClosing: Bool { closing.load(ordering: .relaxed) }

    /// The peer leaves for good when this connection ends (see `leavingFlag`).
    func markLeaving() { leavingFlag.store(true, ordering: .relaxed) }
    var isLeaving: Bool { leavingFlag.load(ordering: .relaxed) }

    var isAuthenticated: Bool { authenticatedFlag.load(ordering: .relaxed) }
    func markAuthenticated() { authenticatedFlag.store(true, ordering: .relaxed) }

    /// Whole milliseconds from `opened` to `t`, in integer arithmetic (this runs for every message
    /// received; dividing two `Duration`s goes through floating point and cost more than the clock read).
    private func millis(_ t: ContinuousClock.Instant) -> Int64 {
        let (seconds, attoseconds) = opened.duration(to: t).components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    func touch() { lastActivity.store(millis(.now), ordering: .relaxed) }

    /// Time since the last message received (or since opening).
    func idle(now: ContinuousClock.Instant) -> Duration {
        now - opened - .milliseconds(lastActivity.load(ordering: .relaxed))
    }

    /// Time since the last keepalive ping (or since opening).
    func sincePing(now: ContinuousClock.Instant) -> Duration {
        now - opened - .milliseconds(lastPing.load(ordering: .relaxed))
    }
}

extension SocketAddress {
    /// The IP address as 4 or 16 bytes; nil for a Unix socket. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, how a dual-stack `::` listener sees an IPv4 client) comes out as its 4 IPv4
    /// bytes, so every check on client addresses (admin.allow, trusted proxies, the throttle) sees one form.
    var addressBytes: [UInt8]? {
        switch self {
        case .v4(let a):
            return withUnsafeBytes(of: a.address.sin_addr) { Array($0) }
        case .v6(let a):
            let b = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            let mapped = b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xFF && b[11] == 0xFF
            return mapped ? Array(b[12...]) : b
        case .unixDomainSocket:
            return nil
        }
    }
}
