import Foundation
import HummingbirdWSClient
import Logging
import Synchronization

/// What a test peer saw: a text message, or the end of the connection.
enum PeerEvent: Equatable, Sendable {
    case text(String)
    case closed
}

/// Events in arrival order, taken one at a time with a deadline (the deadline only bounds a failing
/// test; every wait is for an event).
final class Mailbox: Sendable {
    private struct State {
        var items: [PeerEvent] = []
        var waiter: (id: Int, continuation: CheckedContinuation<PeerEvent?, Never>)?
        var nextID = 0
    }
    private let state = Mutex(State())

    func put(_ e: PeerEvent) {
        let waiter = state.withLock { s -> CheckedContinuation<PeerEvent?, Never>? in
            if let w = s.waiter { s.waiter = nil; return w.continuation }
            s.items.append(e)
            return nil
        }
        waiter?.resume(returning: e)
    }

    func take(timeout: Duration) async -> PeerEvent? {
        await withCheckedContinuation { (c: CheckedContinuation<PeerEvent?, Never>) in
            let id = state.withLock { s -> Int? in
                if !s.items.isEmpty { return nil }
                s.nextID += 1
                s.waiter = (s.nextID, c)
                return s.nextID
            }
            guard let id else {
                let item = state.withLock { $0.items.removeFirst() }
                c.resume(returning: item)
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                let expired = state.withLock { s -> CheckedContinuation<PeerEvent?, Never>? in
                    guard let w = s.waiter, w.id == id else { return nil }
                    s.waiter = nil
                    return w.continuation
                }
                expired?.resume(returning: nil)
            }
        }
    }
}

struct PeerTimeout: Error, CustomStringConvertible {
    let description: String
}

/// A WebSocket client (hummingbird-websocket's) speaking to the server under test.
final class WSTestPeer: Sendable {
    enum Outgoing: Sendable {
        case text(String)
        case binary([UInt8])
        case fragmented([String])
        case close
    }

    let mailbox = Mailbox()
    private let outgoing: AsyncStream<Outgoing>.Continuation
    private let task: Task<Void, Never>

    init(port: Int, room: String) {
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

    static func connect(port: Int, room: String = "room1") -> WSTestPeer { WSTestPeer(port: port, room: room) }

    func send(_ text: String) { outgoing.yield(.text(text)) }
    func send(json: [String: Any]) { send(String(decoding: try! JSONSerialization.data(withJSONObject: json), as: UTF8.self)) }
    func sendBinary(_ bytes: [UInt8]) { outgoing.yield(.binary(bytes)) }
    func sendFragmented(_ parts: [String]) { outgoing.yield(.fragmented(parts)) }
    func close() { outgoing.yield(.close) }

    func authenticate(_ username: String, _ password: String = "pw") {
        send(json: ["event": "authenticate", "data": ["username": username, "password": password]])
    }

    /// The next event, or a thrown timeout after `timeout`.
    func next(timeout: Duration = .seconds(5)) async throws -> PeerEvent {
        guard let e = await mailbox.take(timeout: timeout) else { throw PeerTimeout(description: "no event within \(timeout)") }
        return e
    }

    /// The next message parsed as a JSON object.
    func nextJSON(timeout: Duration = .seconds(5)) async throws -> [String: Any] {
        let e = try await next(timeout: timeout)
        guard case .text(let s) = e else { throw PeerTimeout(description: "connection closed, expected a message") }
        guard let obj = try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
            throw PeerTimeout(description: "not a JSON object: \(s)")
        }
        return obj
    }

    /// Waits until the server closes the connection, failing if a message arrives first.
    func expectClosed(timeout: Duration = .seconds(5)) async throws {
        let e = try await next(timeout: timeout)
        guard e == .closed else { throw PeerTimeout(description: "expected close, got \(e)") }
    }

    /// Authenticates and returns the `authenticated` data.
    func join(_ username: String, _ password: String = "pw") async throws -> [String: Any] {
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
