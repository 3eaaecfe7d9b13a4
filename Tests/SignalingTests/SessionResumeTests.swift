import Auth
import Foundation
import Logging
import NIOPosix
import SignalingTestSupport
import StunTurn
import Testing
import TurnTestSupport
@testable import Signaling

/// A dropped socket holds the session for `signaling.resume_window`; `resume` takes it back with what it
/// missed; leaving is still immediate.
@Suite(.serialized) struct SessionResumeTests {
    func withResume(window: Duration = .seconds(30), messages: Int = 256, bytes: Int = 256 * 1024,
                    _ body: (SignalingServer, Int) async throws -> Void) async throws {
        try await withSignaling(configure: {
            $0.resumeWindow = window
            $0.resumeQueueMessages = messages
            $0.resumeQueueBytes = bytes
        }, body)
    }

    static func data(_ m: [String: Any]) -> [String: Any] { m["data"] as? [String: Any] ?? [:] }

    @Test func aDroppedSocketIsHeldAndItsMissedMessagesAreReplayedInOrderOnResume() async throws {
        try await withResume { server, port in
            let a = WSTestPeer.connect(port: port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = try await RawPeer(port: port)
            let welcome = try await b.login("bob")
            #expect(welcome["event"] as? String == "authenticated")
            let bID = try #require(Self.data(welcome)["peer_id"] as? String)
            let token = try #require(Self.data(welcome)["resume_token"] as? String)
            #expect(token.count >= 22)
            _ = try await a.nextJSON()  // joined

            b.drop()
            let away = try await a.nextJSON()
            #expect(away["event"] as? String == "peer_away" && Self.data(away)["peer_id"] as? String == bID)
            for n in 0..<20 { a.send(#"{"event":"n","to":"\#(bID)","data":\#(n)}"#) }
            try await waitFor { server.hub.state.withLock { $0.peers[bID]?.held?.queuedCount } == 20 }

            let again = try await RawPeer(port: port)
            let resumed = try await again.resume(token)
            #expect(resumed["event"] as? String == "resumed")
            let data = Self.data(resumed)
            #expect(data["peer_id"] as? String == bID)
            #expect(data["replayed"] as? Int == 20)
            #expect((data["resume_token"] as? String).map { $0 != token } == true, "a new token")
            #expect((data["peers"] as? [[String: Any]])?.compactMap { $0["peer_id"] as? String } == [aID])
            for n in 0..<20 {
                let m = try await again.next()
                #expect(m["data"] as? Int == n && m["from"] as? String == aID)
            }
            a.send(#"{"event":"live","to":"\#(bID)","data":1}"#)
            #expect(try await again.next()["event"] as? String == "live")
            let back = try await a.nextJSON()
            #expect(back["event"] as? String == "peer_back", "and no left: \(back)")
            #expect(server.hub.stats.resumes.value == 1)
            #expect(server.hub.stats.replayedMessages.value == 20)
            #expect(server.hub.stats.heldSessions.value == 0)

            // The token that was used is spent.
            let third = try await RawPeer(port: port)
            let failed = try await third.resume(token)
            #expect(Self.data(failed)["code"] as? String == "resume_failed")
            // … and the socket stays open for a login.
            #expect(try await third.login("carol")["event"] as? String == "authenticated")
        }
    }

    @Test func aTokenFromAnotherRoomOrMadeUpFailsAndCountsAsAFailedLogin() async throws {
        try await withResume { server, port in
            let b = try await RawPeer(port: port)
            let token = try #require(Self.data(try await b.login("bob"))["resume_token"] as? String)
            b.drop()
            try await waitFor { server.hub.stats.heldSessions.value == 1 }
            let elsewhere = try await RawPeer(port: port, room: "other-room")
            #expect(Self.data(try await elsewhere.resume(token))["code"] as? String == "resume_failed")
            let madeUp = try await RawPeer(port: port)
            #expect(Self.data(try await madeUp.resume("x" + token))["code"] as? String == "resume_failed")
            #expect(server.hub.stats.failedResumes.value == 2)
            #expect(server.hub.stats.authFailures.value == 2)
            // The held session is untouched: the right room still resumes it.
            let right = try await RawPeer(port: port)
            #expect(try await right.resume(token)["event"] as? String == "resumed")
        }
    }

    @Test func theWindowEndingWithoutAResumeIsALeave() async throws {
        try await withResume(window: .seconds(1)) { server, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = try await RawPeer(port: port)
            let welcome = Self.data(try await b.login("bob"))
            let bID = try #require(welcome["peer_id"] as? String)
            let turnUser = try #require((welcome["ice_servers"] as? [[String: Any]])?.compactMap { $0["username"] as? String }.first)
            _ = try await a.nextJSON()
            b.drop()
            #expect(try await a.nextJSON()["event"] as? String == "peer_away")
            #expect(server.hub.credentials.lookup(turnUser) != .unknown, "valid while held")
            let left = try await a.nextJSON(timeout: .seconds(5))
            #expect(left["event"] as? String == "left" && Self.data(left)["peer_id"] as? String == bID)
            #expect(server.hub.stats.heldExpired.value == 1)
            #expect(server.hub.credentials.lookup(turnUser) == .unknown, "its TURN credentials are revoked")
        }
    }

    @Test func aFullResumeQueueEndsTheSessionAsALeave() async throws {
        try await withResume(messages: 5) { server, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = try await RawPeer(port: port)
            let bID = try #require(Self.data(try await b.login("bob"))["peer_id"] as? String)
            _ = try await a.nextJSON()
            b.drop()
            #expect(try await a.nextJSON()["event"] as? String == "peer_away")
            for n in 0..<6 { a.send(#"{"event":"n","to":"\#(bID)","data":\#(n)}"#) }
            let left = try await a.nextJSON()
            #expect(left["event"] as? String == "left" && Self.data(left)["peer_id"] as? String == bID)
        }
    }

    @Test(arguments: ["close 1000", "close 1001", "leave"])
    func leavingIsImmediate(_ how: String) async throws {
        try await withResume { server, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = try await RawPeer(port: port)
            _ = try await b.login("bob")
            _ = try await a.nextJSON()
            switch how {
            case "close 1000": b.socket.send(clientFrame(0x8, [0x03, 0xE8]))
            case "close 1001": b.socket.send(clientFrame(0x8, [0x03, 0xE9]))
            default: b.send(#"{"event":"leave"}"#)
            }
            #expect(try await a.nextJSON()["event"] as? String == "left")
            #expect(server.hub.stats.heldSessions.value == 0)
        }
    }

    @Test func anotherCloseCodeHoldsTheSession() async throws {
        try await withResume { server, port in
            let b = try await RawPeer(port: port)
            _ = try await b.login("bob")
            b.socket.send(clientFrame(0x8, [0x0F, 0xA0]))  // 4000: an application's own code, not a leave
            try await waitFor { server.hub.stats.heldSessions.value == 1 }
        }
    }

    @Test func resumingWhileTheOldSocketIsStillOpenClosesIt() async throws {
        try await withResume { _, port in
            let old = try await RawPeer(port: port)
            let token = try #require(Self.data(try await old.login("bob"))["resume_token"] as? String)
            let new = try await RawPeer(port: port)
            #expect(try await new.resume(token)["event"] as? String == "resumed")
            let closed = try await old.next()
            #expect(Self.data(closed)["code"] as? String == "resumed")
        }
    }

    @Test func theSessionsTurnAllocationKeepsRelayingWhileHeldAndIsReleasedWhenTheWindowEnds() async throws {
        try await withSignalingAndTurn(configure: { $0.resumeWindow = .seconds(2) },
                                       configureTurn: { $0.peerPolicy = PeerAddressPolicy(allow: [CIDR("127.0.0.0/8")!]) }) {
            server, port, turn, turnPort in
            let b = try await RawPeer(port: port)
            let welcome = Self.data(try await b.login("bob"))
            let entry = try #require((welcome["ice_servers"] as? [[String: Any]])?.first { $0["username"] != nil })
            let client = TurnTestClient(serverPort: turnPort, username: entry["username"] as! String,
                                        password: entry["credential"] as! String)
            let relayed = try #require(client.allocate()?.xorAddress(AttributeType.xorRelayedAddress))
            let peer = UDPTestSocket()
            #expect(client.channelBind(0x4001, peer.address)?.messageClass == .successResponse)
            b.drop()
            try await waitFor { server.hub.stats.heldSessions.value == 1 }
            // Held: the call's relayed media keep flowing both ways.
            client.socket.send([0x40, 0x01, 0x00, 0x01, 7], to: turnPort)
            #expect(peer.receive()?.bytes == [7])
            peer.send([8], to: relayed.port)
            #expect(client.socket.receive()?.bytes == [0x40, 0x01, 0x00, 0x01, 8])
            // The window ends without a resume: the allocation goes with the session.
            try await waitFor(timeout: .seconds(5)) { turn.stats.allocationsActive.value == 0 }
        }
    }

    /// Polls a count the server keeps until `condition` holds (bounded).
    func waitFor(timeout: Duration = .seconds(3), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within \(timeout)")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
