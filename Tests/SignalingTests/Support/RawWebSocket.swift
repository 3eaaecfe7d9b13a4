import Foundation
import TurnTestSupport

/// The HTTP/1.1 upgrade request a raw WebSocket client sends for `path` (RFC 6455 §4.1).
func upgradeRequest(_ path: String, upgrade: String = "websocket") -> [UInt8] {
    Array(("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: \(upgrade)\r\n"
        + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").utf8)
}

/// A raw TCP client that has sent the upgrade request for `path` and read the response head (empty if
/// none arrived); the caller checks the status.
func rawWebSocket(port: Int, path: String) async -> (socket: TCPTestSocket, head: String)? {
    guard let s = TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000) else { return nil }
    s.send(upgradeRequest(path))
    let head = await offPool { s.receive(through: Array("\r\n\r\n".utf8)) } ?? []
    return (s, String(decoding: head, as: UTF8.self))
}

/// Runs a blocking call (a `TCPTestSocket` read that waits for the server) on a thread of its own. The
/// server's HTTP responses are made by async tasks on Swift's cooperative pool, which has one thread per
/// core (two here): tests running in parallel that block those threads while they wait for a response
/// starve the very tasks that would send it, and every HTTP test then times out.
func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { done in
        Thread { done.resume(returning: body()) }.start()
    }
}
