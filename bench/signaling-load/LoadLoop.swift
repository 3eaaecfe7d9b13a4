// The load client's one thread: an epoll loop over every connection that reads and times deliveries,
// answers pings, and sends directed messages on a 2 ms schedule.
import CEpoll
import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class LoadLoop {
    private let epoll: Int32
    /// Live connections, indexed by file descriptor.
    private var byFD: [Connection?] = []
    private(set) var connectionCount = 0
    private(set) var sent = 0, delivered = 0, errors = 0, lostConnections = 0
    private(set) var latenciesMicros: [UInt32] = []
    private var scratch = [UInt8](repeating: 0, count: 1 << 16)
    private var payload: [UInt8] = []
    private var frame: [UInt8] = []
    private var rng = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
    private var cursor = 0

    init() throws {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw LoadError.errno("epoll_create1") }
        payload.reserveCapacity(256)
        frame.reserveCapacity(512)
    }

    func add(_ c: Connection) throws {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = c.fd
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, c.fd, &event) == 0 else {
            Glibc.close(c.fd)
            throw LoadError.errno("epoll_ctl")
        }
        if byFD.count <= Int(c.fd) { byFD += [Connection?](repeating: nil, count: Int(c.fd) + 1 - byFD.count) }
        byFD[Int(c.fd)] = c
        connectionCount += 1
        // Frames that came in behind `authenticated` (joined events) are handled now.
        if !c.partial.isEmpty {
            let leftover = c.partial
            c.partial = []
            _ = leftover.withUnsafeBufferPointer { handle(c, $0) }
        }
    }

    private static func monotonicNanos() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Serves every connection for `seconds`; with a rate, also sends that many directed messages per
    /// second in total, round-robin over the connections that know a target, credited by the time that
    /// really passed so that late ticks do not lower the rate.
    func run(seconds: Double, sendingPerSecond rate: Double = 0) {
        let start = Self.monotonicNanos()
        let end = start + UInt64(seconds * 1e9)
        var lastTick = start, readyAt = start
        var credit = 0.0
        var ready = senders
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        while true {
            let now = Self.monotonicNanos()
            if now >= end { break }
            let timeout = rate > 0 ? 2 : Int32(min(100, (end - now) / 1_000_000 + 1))
            let n = epoll_wait(epoll, &events, Int32(events.count), timeout)
            if n > 0 {
                for i in 0..<Int(n) {
                    let fd = events[i].data.fd
                    guard Int(fd) < byFD.count, let c = byFD[Int(fd)] else { continue }
                    if events[i].events & EPOLLOUT.rawValue != 0 { flushPending(c) }
                    if events[i].events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { readFrom(c) }
                }
            }
            guard rate > 0 else { continue }
            let tick = Self.monotonicNanos()
            guard tick - lastTick >= 2_000_000 else { continue }
            credit += rate * Double(tick - lastTick) / 1e9
            lastTick = tick
            // Who can send changes only on joined/left: rebuilt once a second, not every tick.
            if tick - readyAt > 1_000_000_000 {
                ready = senders
                readyAt = tick
            }
            if ready.isEmpty { credit = 0; continue }
            while credit >= 1 {
                credit -= 1
                cursor = (cursor + 1) % ready.count
                let c = ready[cursor]
                if !c.closed { sendDirected(c) }
            }
        }
    }

    /// The connections that know a peer to send to.
    private var senders: [Connection] { byFD.compactMap { $0 }.filter { $0.target != nil } }

    /// Every connection chooses its target again (after all have logged in, so that `--cross` knows where
    /// each peer is).
    func chooseTargets() { for c in byFD.compactMap({ $0 }) { c.chooseTarget() } }

    func forEachConnection(_ body: (Connection) -> Void) { for c in byFD.compactMap({ $0 }) { body(c) } }

    private static let directedStart = Array(#"{"event":"m","to":""#.utf8)
    private static let directedMiddle = Array(#"","data":{"t":"#.utf8)
    private static let timeKey = Array(#""t":"#.utf8)

    /// Takes `c` out of the loop without closing it (its owner does).
    func remove(_ c: Connection) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, c.fd, nil)
        byFD[Int(c.fd)] = nil
        connectionCount -= 1
    }

    /// One directed message from `c` to `peer` (or to its target).
    func send(from c: Connection, to peer: String) {
        let saved = c.target
        c.target = Array(peer.utf8)
        sendDirected(c)
        c.target = saved
    }

    /// `{"event":"m","to":TARGET,"data":{"t":SEND_TIME_NS}}`, one write(2).
    private func sendDirected(_ c: Connection) {
        guard let target = c.target else { return }
        payload.removeAll(keepingCapacity: true)
        payload += Self.directedStart
        payload += target
        payload += Self.directedMiddle
        appendDecimal(Self.monotonicNanos(), to: &payload)
        payload.append(UInt8(ascii: "}"))
        payload.append(UInt8(ascii: "}"))
        frame.removeAll(keepingCapacity: true)
        payload.withUnsafeBytes { appendFrame(to: &frame, opcode: 0x1, payload: $0, rng: &rng) }
        send(frame, on: c)
        sent += 1
    }

    private func send(_ bytes: [UInt8], on c: Connection) {
        if !c.pendingOut.isEmpty {
            c.pendingOut += bytes
            return
        }
        let n = bytes.withUnsafeBytes { write(c.fd, $0.baseAddress, $0.count) }
        if n == bytes.count { return }
        if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
            drop(c)
            return
        }
        c.pendingOut = Array(bytes[max(0, n)...])
        watch(c, output: true)
    }

    private func flushPending(_ c: Connection) {
        let n = c.pendingOut.withUnsafeBytes { write(c.fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno != EAGAIN && errno != EWOULDBLOCK { drop(c) }
            return
        }
        c.pendingOut.removeFirst(n)
        if c.pendingOut.isEmpty { watch(c, output: false) }
    }

    private func watch(_ c: Connection, output: Bool) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | (output ? EPOLLOUT.rawValue : 0)
        event.data.fd = c.fd
        epoll_ctl(epoll, EPOLL_CTL_MOD, c.fd, &event)
    }

    private func readFrom(_ c: Connection) {
        while !c.closed {
            let n = scratch.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                drop(c)
                return
            }
            if n < 0 { return }
            if c.partial.isEmpty {
                let used = scratch.withUnsafeBufferPointer { handle(c, UnsafeBufferPointer(rebasing: $0[..<n])) }
                if used < n { c.partial = Array(scratch[used..<n]) }
            } else {
                c.partial += scratch[..<n]
                let bytes = c.partial
                let used = bytes.withUnsafeBufferPointer { handle(c, $0) }
                c.partial = Array(bytes[used...])
            }
            if n < scratch.count { return }
        }
    }

    /// Handles the complete frames at the start of `bytes`; returns how many bytes they took.
    @discardableResult
    private func handle(_ c: Connection, _ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        c.consumeFrames(bytes) { opcode, body in
            switch opcode {
            case 0x1:
                switch c.handleEvent(body) {
                case .directed:
                    if let t = Self.number(after: Self.timeKey, in: body) {
                        delivered += 1
                        let now = Self.monotonicNanos()
                        latenciesMicros.append(UInt32(min(UInt64(UInt32.max), (now &- t) / 1000)))
                    }
                case .refused:
                    errors += 1
                default:
                    break
                }
            case 0x9:  // ping → pong with the same payload
                var pong: [UInt8] = []
                appendFrame(to: &pong, opcode: 0xA, payload: UnsafeRawBufferPointer(body), rng: &rng)
                send(pong, on: c)
            case 0x8:
                drop(c)
            default:
                break
            }
        }
    }

    private func drop(_ c: Connection) {
        guard !c.closed else { return }
        c.closed = true
        epoll_ctl(epoll, EPOLL_CTL_DEL, c.fd, nil)
        Glibc.close(c.fd)
        byFD[Int(c.fd)] = nil
        connectionCount -= 1
        lostConnections += 1
    }

    /// Ends every connection as a page that closes does: a close frame with 1000, so that the server ends
    /// the session at once instead of holding it for a resume (a held session stays in its room's roster,
    /// and the next run on the same server would send to it); then, once the server has closed them or
    /// `grace` seconds have passed, the sockets.
    func closeAll(grace: Double = 3) {
        var out: [UInt8] = []
        let normalClosure: [UInt8] = [0x03, 0xE8]
        for c in byFD.compactMap({ $0 }) where !c.closed {
            out.removeAll(keepingCapacity: true)
            normalClosure.withUnsafeBytes { appendFrame(to: &out, opcode: 0x8, payload: $0, rng: &rng) }
            _ = out.withUnsafeBytes { write(c.fd, $0.baseAddress, $0.count) }
        }
        var waited = 0.0
        while connectionCount > 0, waited < grace {
            run(seconds: 0.1)
            waited += 0.1
        }
        for c in byFD.compactMap({ $0 }) {
            c.closed = true
            Glibc.close(c.fd)
        }
        byFD = []
        connectionCount = 0
    }

    /// The decimal number after the last occurrence of `key` (the send time is the message's last member).
    static func number(after key: [UInt8], in bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
        var i = bytes.count - key.count
        while i >= 0 {
            if bytes[i] == key[0], (0..<key.count).allSatisfy({ bytes[i + $0] == key[$0] }) {
                var j = i + key.count, v: UInt64 = 0
                while j < bytes.count, bytes[j] == UInt8(ascii: " ") { j += 1 }  // a server that re-encodes with spaces
                while j < bytes.count, bytes[j] >= 0x30, bytes[j] <= 0x39 { v = v * 10 + UInt64(bytes[j] - 0x30); j += 1 }
                return v
            }
            i -= 1
        }
        return nil
    }
}

/// `value` in decimal, without the String (and, at 19 digits, the heap allocation) `String(value)` makes.
private func appendDecimal(_ value: UInt64, to out: inout [UInt8]) {
    let start = out.count
    var v = value
    repeat {
        out.append(UInt8(ascii: "0") + UInt8(v % 10))
        v /= 10
    } while v > 0
    out[start...].reverse()
}
