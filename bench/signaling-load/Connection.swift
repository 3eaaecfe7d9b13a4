// One client WebSocket on a plain socket: the blocking handshake and login, then frame building and
// parsing on raw bytes for the epoll loop (EventLoop.swift).
import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct LoadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    static func errno(_ call: String) -> LoadError { LoadError("\(call): \(String(cString: strerror(Glibc.errno)))") }
}

final class Connection {
    let fd: Int32
    /// The room's other peers, and the one this connection sends its directed messages to.
    var members: [String] = []
    var target: [UInt8]?
    /// This connection's own peer id, and which of the `--ports` it went to.
    var peerID = ""
    var portIndex = 0
    /// Which members may be targets (`--cross`: only peers on another instance); nil = any.
    var acceptsTarget: ((String) -> Bool)?
    /// The token that resumes this session (`--resume-drop`), and how many messages its resume replayed.
    var resumeToken: String?
    var replayed = 0
    /// Bytes of a server frame that has not fully arrived yet.
    var partial: [UInt8] = []
    /// Bytes the kernel did not take yet (the socket's send buffer was full); sent on EPOLLOUT.
    var pendingOut: [UInt8] = []
    var closed = false

    private init(fd: Int32) { self.fd = fd }

    /// Connects, upgrades `path` to a WebSocket and authenticates with the `authenticate` frame; returns
    /// once `authenticated` arrived, with the socket made non-blocking. Throws on any other outcome.
    static func open(host: String, port: Int, path: String, authenticate: String,
                     acceptsTarget: ((String) -> Bool)? = nil) throws -> Connection {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LoadError.errno("socket") }
        let c = Connection(fd: fd)
        c.acceptsTarget = acceptsTarget
        do {
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr(host)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw LoadError.errno("connect") }

            let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            let request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
            try c.writeBlocking(Array(request.utf8))
            // The answer's head; what follows it is frames.
            var head: [UInt8] = []
            let end = Array("\r\n\r\n".utf8)
            var headEnd: Int?
            while headEnd == nil {
                let got = try c.readBlocking()
                head += got
                headEnd = head.firstRange(of: end)?.upperBound
                if head.count > 16_384 { throw LoadError("answer head too long") }
            }
            guard head.starts(with: Array("HTTP/1.1 101".utf8)) else {
                throw LoadError("no upgrade: \(String(decoding: head.prefix(40), as: UTF8.self))")
            }
            c.partial = Array(head[headEnd!...])

            var rng = SplitMix64(seed: UInt64(fd))
            var frame: [UInt8] = []
            Array(authenticate.utf8).withUnsafeBytes { appendFrame(to: &frame, opcode: 0x1, payload: $0, rng: &rng) }
            try c.writeBlocking(frame)
            var authenticated = false
            var refusal: String?
            while !authenticated {
                let consumed = c.partial.withUnsafeBufferPointer { bytes in
                    // Stops after the login's answer: what follows (joined events, a resume's replayed
                    // messages) is left for the loop, which counts it.
                    c.consumeFrames(bytes, until: { authenticated || refusal != nil }) { opcode, payload in
                        guard opcode == 0x1, !authenticated else { return }
                        switch c.handleEvent(payload) {
                        case .authenticated: authenticated = true
                        case .refused(let event): refusal = event
                        default: break
                        }
                    }
                }
                c.partial.removeFirst(consumed)
                if let refusal { throw LoadError("the login was answered \(refusal)") }
                if !authenticated { c.partial += try c.readBlocking() }
            }
            guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else { throw LoadError.errno("fcntl") }
            return c
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Gone without a close frame, with a reset (as when a proxy in front restarts).
    func abort() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(fd)
        closed = true
    }

    private func writeBlocking(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else { throw LoadError.errno("write") }
            offset += n
        }
    }

    private func readBlocking() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw n == 0 ? LoadError("closed by the server") : LoadError.errno("read") }
        return Array(buffer[..<n])
    }

    /// Calls `frame(opcode, payload)` for every complete server frame at the start of `bytes` and
    /// returns how many bytes those frames took. Server frames are unmasked and, from this server,
    /// never fragmented.
    func consumeFrames(_ bytes: UnsafeBufferPointer<UInt8>, until done: () -> Bool = { false },
                       _ frame: (UInt8, UnsafeBufferPointer<UInt8>) -> Void) -> Int {
        var at = 0
        while bytes.count - at >= 2 {
            let opcode = bytes[at] & 0x0F
            var length = Int(bytes[at + 1] & 0x7F), header = 2
            if length == 126 {
                guard bytes.count - at >= 4 else { break }
                length = Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
                header = 4
            } else if length == 127 {
                guard bytes.count - at >= 10 else { break }
                length = (0..<8).reduce(0) { $0 << 8 | Int(bytes[at + 2 + $1]) }
                header = 10
            }
            guard bytes.count - at >= header + length else { break }
            frame(opcode, UnsafeBufferPointer(rebasing: bytes[(at + header)..<(at + header + length)]))
            at += header + length
            if done() { break }
        }
        return at
    }

    enum Event { case directed, authenticated, joined, left, refused(String), other }

    /// A random member this connection may send to (`acceptsTarget`), or none.
    func chooseTarget() {
        let candidates = acceptsTarget.map { accept in members.filter(accept) } ?? members
        target = candidates.randomElement().map { Array($0.utf8) }
    }

    static let fromPrefix = Array(#"{"from":"#.utf8)

    /// What a text frame means for this connection's room view. Directed messages (the hot path) are
    /// recognised by their first bytes when the server puts `from` first, as this one does; any other
    /// server's are recognised by their `event` ("m") and `from`, whatever the order of the keys.
    func handleEvent(_ payload: UnsafeBufferPointer<UInt8>) -> Event {
        if payload.starts(with: Self.fromPrefix) { return .directed }
        guard let json = try? JSONSerialization.jsonObject(with: Data(buffer: payload)) as? [String: Any],
              let event = json["event"] as? String else { return .other }
        if event == "m", json["from"] != nil { return .directed }
        let data = json["data"] as? [String: Any]
        switch event {
        case "resumed":
            peerID = data?["peer_id"] as? String ?? ""
            resumeToken = data?["resume_token"] as? String
            replayed = data?["replayed"] as? Int ?? 0
            members = ((data?["peers"] as? [[String: Any]]) ?? []).compactMap { $0["peer_id"] as? String }
            return .authenticated
        case "authenticated":
            peerID = data?["peer_id"] as? String ?? ""
            resumeToken = data?["resume_token"] as? String
            let peers = (data?["peers"] as? [[String: Any]]) ?? []
            members = peers.compactMap { $0["peer_id"] as? String }
            chooseTarget()
            return .authenticated
        case "joined":
            if let id = data?["peer_id"] as? String {
                members.append(id)
                if target == nil { chooseTarget() }
            }
            return .joined
        case "left":
            if let id = data?["peer_id"] as? String {
                members.removeAll { $0 == id }
                if target == Array(id.utf8) { chooseTarget() }
            }
            return .left
        case "error", "unauthorized":
            return .refused(event)
        default:
            return .other
        }
    }
}

/// Appends one masked client frame (FIN set) carrying `payload` (RFC 6455 §5.2).
func appendFrame(to out: inout [UInt8], opcode: UInt8, payload: UnsafeRawBufferPointer, rng: inout SplitMix64) {
    let n = payload.count
    out.append(0x80 | opcode)
    if n < 126 {
        out.append(0x80 | UInt8(n))
    } else if n <= 0xFFFF {
        out.append(0x80 | 126)
        out.append(UInt8(n >> 8))
        out.append(UInt8(n & 0xFF))
    } else {
        out.append(0x80 | 127)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((n >> shift) & 0xFF)) }
    }
    withUnsafeBytes(of: UInt32(truncatingIfNeeded: rng.next())) { mask in
        out.append(contentsOf: mask)
        for i in 0..<n { out.append(payload[i] ^ mask[i & 3]) }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): fast, good enough for masking keys in a load generator (the
/// system generator costs a getrandom(2) per frame, CPU taken from the server on the same machine).
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
