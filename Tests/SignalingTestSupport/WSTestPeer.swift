import Foundation
import HummingbirdWSClient
import Logging
import Synchronization

/// What a test peer saw: a text message, or the end of the connection.
public enum PeerEvent: Equatable, Sendable {
    case text(String)
    case closed
}

public struct PeerTimeout: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// A WebSocket client (hummingbird-websocket's) speaking to the server under test.
public final class WSTestPeer: Sendable {
    public enum Outgoing: Sendable {
        case text(String)
        case binary([UInt8])
        case fragmented([String])
        case close
    }

    public let mailbox = Mailbox<PeerEvent>()
    private let outgoing: AsyncStream<Outgoing>.Continuation
    private let task: Task<Void, Never>

    public init(port: Int, room: String) {
        let (stream, continuation) = AsyncStream.makeStream(of: Outgoing.self)
        outgoing = continuation
        let mailbox = self.mailbox
        var logger = Logger(label: "ws-test-peer")
        logger.logLevel = .critical
        task = Task {
            do {
                try await WebSocketClient.connect(
                    url: "ws://127.0.0.1:\(port)/websocket/\(room)",
                    configuration: .init(maxFrameSize: 1 << 20, closeTimeout: .seconds(2)), logger: logger
                ) { inbound, outbound, _ in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await o in stream {
                                switch o {
                                case .text(let s): try await outbound.write(.text(s))
                                case .binary(let b): try await outbound.write(.binary(.init(bytes: b)))
                                case .fragmented(let parts):
                                    try await outbound.withTextMessageWriter { writer in
                                        for p in parts { try await writer(p) }
                                    }
                                case .close: try await outbound.close(.normalClosure, reason: nil)
                                }
                            }
                        }
                        for try await message in inbound.messages(maxSize: 1 << 20) {
                            if case .text(let s) = message { mailbox.put(.text(s)) }
                        }
                        group.cancelAll()
                    }
                }
            } catch {}
            mailbox.put(.closed)
        }
    }

    public static func connect(port: Int, room: String = "room1") -> WSTestPeer { WSTestPeer(port: port, room: room) }

    public func send(_ text: String) { outgoing.yield(.text(text)) }
    public func send(json: [String: Any]) { send(String(decoding: try! JSONSerialization.data(withJSONObject: json), as: UTF8.self)) }
    public func sendBinary(_ bytes: [UInt8]) { outgoing.yield(.binary(bytes)) }
    public func sendFragmented(_ parts: [String]) { outgoing.yield(.fragmented(parts)) }
    public func close() { outgoing.yield(.close) }

    public func authenticate(_ username: String, _ password: String = "pw") {
        send(json: ["event": "authenticate", "data": ["username": username, "password": password]])
    }

    /// The next event, or a thrown timeout after `timeout`.
    public func next(timeout: Duration = .seconds(5)) async throws -> PeerEvent {
        guard let e = await mailbox.take(timeout: timeout) else { throw PeerTimeout(description: "no event within \(timeout)") }
        return e
    }

    /// The next message parsed as a JSON object.
    public func nextJSON(timeout: Duration = .seconds(5)) async throws -> [String: Any] {
        let e = try await next(timeout: timeout)
        guard case .text(let s) = e else { throw PeerTimeout(description: "connection closed, expected a message") }
        guard let obj = try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
            throw PeerTimeout(description: "not a JSON object: \(s)")
        }
        return obj
    }

    /// Waits until the server closes the connection, failing if a message arrives first.
    public func expectClosed(timeout: Duration = .seconds(5)) async throws {
        let e = try await next(timeout: timeout)
        guard e == .closed else { throw PeerTimeout(description: "expected close, got \(e)") }
    }

    /// Authenticates and returns the `authenticated` data.
    public func join(_ username: String, _ password: String = "pw") async throws -> [String: Any] {
        authenticate(username, password)
        let m = try await nextJSON()
        guard m["event"] as? String == "authenticated", let data = m["data"] as? [String: Any] else {
            throw PeerTimeout(description: "expected authenticated, got \(m)")
        }
        return data
    }

    deinit {
        outgoing.finish()
        task.cancel()
    }
}
