import Crypto
import Foundation
import Hummingbird
import Logging
import Synchronization
import SignalingTestSupport
import Testing
@testable import Signaling

/// Records hook calls in order, and what the room looked like to the others when each ran.
final class RecordingHooks: SignalingHooks {
    let events = Mutex<[RoomEvent]>([])
    let arrived: AsyncStream<RoomEvent>
    private let continuation: AsyncStream<RoomEvent>.Continuation

    init() { (arrived, continuation) = AsyncStream.makeStream(of: RoomEvent.self) }

    func peerJoined(_ event: RoomEvent) async throws { record(event) }
    func peerLeft(_ event: RoomEvent) async throws { record(event) }
    func record(_ e: RoomEvent) {
        events.withLock { $0.append(e) }
        continuation.yield(e)
    }
}

struct FailingHook: SignalingHooks {
    struct Boom: Error {}
    func peerJoined(_ event: RoomEvent) async throws { throw Boom() }
    func peerLeft(_ event: RoomEvent) async throws { throw Boom() }
}

@Suite struct HookTests {
    @Test func hooksSeeJoinsAndLeavesInOrderWithTheOthers() async throws {
        let hooks = RecordingHooks()
        try await withSignaling(hooks: [FailingHook(), hooks]) { server, port in
            var arrivals = hooks.arrived.makeAsyncIterator()
            let a = WSTestPeer.connect(port: port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = WSTestPeer.connect(port: port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            #expect(try await a.nextJSON()["event"] as? String == "joined")
            b.close()
            #expect(try await a.nextJSON()["event"] as? String == "left")
            for _ in 0..<3 { _ = await arrivals.next() }
            let seen = hooks.events.withLock { $0 }
            #expect(seen.map(\.kind) == [.joined, .joined, .left])
            #expect(seen.map(\.peer.peerID) == [aID, bID, bID])
            #expect(seen[1].others == [PeerInfo(peerID: aID, username: "alice")])
            #expect(seen[2].others == [PeerInfo(peerID: aID, username: "alice")])
            #expect(seen.allSatisfy { $0.room == "room1" })
            // The failing hook was counted and did not stop the next one.
            #expect(server.hub.stats.hookFailures.value == 3)
        }
    }

    @Test func webhookPostsSignedJSONForJoinAndLeave() async throws {
        let (bodies, received) = AsyncStream.makeStream(of: (body: [UInt8], signature: String?).self)
        let router = Router()
        router.post("/hook") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 16)
            received.yield((Array(body.readableBytesView), request.headers.first(where: { $0.name.canonicalName == "x-webrtc-signature" })?.value))
            return .ok
        }
        let receiverPort = Mutex<Int?>(nil)
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "hook-receiver")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { ch in
                                  receiverPort.withLock { $0 = ch.localAddress?.port }
                                  portContinuation.yield(ch.localAddress!.port!)
                              }, logger: logger)
        let receiver = Task { try await app.run() }
        var ports = portStream.makeAsyncIterator()
        let hookPort = try #require(await ports.next())
        defer { receiver.cancel() }

        try await withSignaling(configure: {
            $0.webhook = WebhookSettings(url: URL(string: "http://127.0.0.1:\(hookPort)/hook")!, secret: "s3cret")
        }) { server, port in
            let a = WSTestPeer.connect(port: port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            a.close()
            try await a.expectClosed()
            var it = bodies.makeAsyncIterator()
            for expected in ["joined", "left"] {
                let (body, signature) = try #require(await it.next())
                let json = try JSONSerialization.jsonObject(with: Data(body)) as! [String: Any]
                #expect(json["event"] as? String == expected)
                #expect(json["peer_id"] as? String == aID)
                #expect(json["username"] as? String == "alice")
                #expect(json["room"] as? String == "room1")
                let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array("s3cret".utf8)))
                #expect(signature == "sha256=" + mac.map { String(format: "%02x", $0) }.joined())
            }
            _ = server
        }
    }

    @Test func unreachableWebhookIsCountedAndSignalingGoesOn() async throws {
        let after = RecordingHooks()  // runs after the webhook for each event
        try await withSignaling(hooks: [after], configure: {
            // A port nothing listens on: the POST fails at once.
            $0.webhook = WebhookSettings(url: URL(string: "http://127.0.0.1:9/hook")!, secret: "", timeout: .seconds(1))
        }) { server, port in
            var arrivals = after.arrived.makeAsyncIterator()
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: port)
            _ = try await b.join("bob")
            #expect(try await a.nextJSON()["event"] as? String == "joined")
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
            for _ in 0..<2 { _ = await arrivals.next() }
            #expect(server.hub.stats.hookFailures.value == 2)
            #expect(server.hub.stats.webhookDeliveries.value == 0)
        }
    }
}
