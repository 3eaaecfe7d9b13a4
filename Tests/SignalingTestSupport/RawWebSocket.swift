import Foundation
import TurnTestSupport

/// The HTTP/1.1 upgrade request a raw WebSocket client sends for `path` (RFC 6455 §4.1).
public func upgradeRequest(_ path: String, upgrade: String = "websocket") -> [UInt8] {
    Array(("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: \(upgrade)\r\n"
        + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").utf8)
}

/// A raw TCP client that has sent the upgrade request for `path` and read the response head (empty if
/// none arrived); the caller checks the status.
public func rawWebSocket(port: Int, path: String) async -> (socket: TCPTestSocket, head: String)? {
    guard let s = TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000) else { return nil }
    s.send(upgradeRequest(path))
    let head = await offPool { s.receive(through: Array("\r\n\r\n".utf8)) } ?? []
    return (s, String(decoding: head, as: UTF8.self))
}

/// Runs a blocking call (a `TCPTestSocket` read that waits for the server) on a thread of its own. The
/// server's HTTP responses are made by async tasks on Swift's cooperative pool, which has one thread per
/// core (two here): tests running in parallel that block those threads while they wait for a response
/// starve the very tasks that would send it, and every HTTP test then times out.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { done in
        Thread { done.resume(returning: body()) }.start()
    }
}

/// A client frame as a browser sends it: masked, with the 7-, 16- or 64-bit length form.
public func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D],
                 masked: Bool = true, firstByteExtra: UInt8 = 0, forceLong: Bool = false) -> [UInt8] {
    var out: [UInt8] = [(fin ? 0x80 : 0) | firstByteExtra | opcode]
    let maskBit: UInt8 = masked ? 0x80 : 0
    if forceLong || payload.count > 0xFFFF {
        out.append(maskBit | 127)
        out += withUnsafeBytes(of: UInt64(payload.count).bigEndian, Array.init)
    } else if payload.count >= 126 {
        out.append(maskBit | 126)
        out += withUnsafeBytes(of: UInt16(payload.count).bigEndian, Array.init)
    } else {
        out.append(maskBit | UInt8(payload.count))
    }
    guard masked else { return out + payload }
    return out + key + payload.enumerated().map { $0.element ^ key[$0.offset & 3] }
}

/// A WebSocket on a raw TCP socket: it can go away without a close frame, as a phone switching
/// networks does.
public final class RawPeer: @unchecked Sendable {
    public let socket: TCPTestSocket

    public init(port: Int, room: String = "room1") async throws {
        guard let (s, head) = await rawWebSocket(port: port, path: "/websocket/\(room)") else { throw PeerTimeout(description: "no connection") }
        guard head.hasPrefix("HTTP/1.1 101") else { throw PeerTimeout(description: "no upgrade: \(head)") }
        socket = s
    }

    public func send(_ json: String) { socket.send(clientFrame(0x1, Array(json.utf8))) }

    public func login(_ user: String) async throws -> [String: Any] {
        send(#"{"event":"authenticate","data":{"username":"\#(user)","password":"pw"}}"#)
        return try await next()
    }

    public func resume(_ token: String) async throws -> [String: Any] {
        send(#"{"event":"resume","data":{"token":"\#(token)"}}"#)
        return try await next()
    }

    /// The next text frame from the server, as JSON.
    public func next() async throws -> [String: Any] {
        let socket = self.socket
        let payload = await offPool { () -> [UInt8]? in
            guard let head = socket.receive(count: 2) else { return nil }
            var length = Int(head[1] & 0x7F)
            if length == 126 {
                guard let ext = socket.receive(count: 2) else { return nil }
                length = Int(ext[0]) << 8 | Int(ext[1])
            } else if length == 127 {
                guard let ext = socket.receive(count: 8) else { return nil }
                length = ext.reduce(0) { $0 << 8 | Int($1) }
            }
            return length == 0 ? [] : socket.receive(count: length)
        }
        guard let bytes = payload else { throw PeerTimeout(description: "the server closed or sent nothing") }
        guard let json = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw PeerTimeout(description: "not a JSON object")
        }
        return json
    }

    /// Gone without a close frame.
    public func drop() { socket.shutdown() }
}

