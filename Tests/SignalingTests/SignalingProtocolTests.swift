import Foundation
import SignalingTestSupport
import Testing
import TurnTestSupport
@testable import Signaling

/// The wire protocol shared with lambdaclass/webrtc-server, and what this server adds to it.
@Suite struct SignalingProtocolTests {
    @Test func authenticatedCarriesPeerIDRosterAndIceServers() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            let aData = try await a.join("alice")
            let aID = try #require(aData["peer_id"] as? String)
            #expect((aData["peers"] as? [Any])?.isEmpty == true)
            let ice = try #require(aData["ice_servers"] as? [[String: Any]])
            #expect((ice[0]["urls"] as? [String])?.first == "stun:127.0.0.1:3478")
            let turn = try #require(ice.first { $0["username"] != nil })
            #expect((turn["urls"] as? [String]) == ["turn:127.0.0.1:3478?transport=udp"])
            #expect((turn["username"] as? String)?.hasSuffix(":" + aID) == true)

            let b = WSTestPeer.connect(port: port)
            let bData = try await b.join("bob")
            let roster = try #require(bData["peers"] as? [[String: String]])
            #expect(roster == [["peer_id": aID, "username": "alice"]])
            let joined = try await a.nextJSON()
            #expect(joined["event"] as? String == "joined")
            #expect((joined["data"] as? [String: String]) == ["peer_id": bData["peer_id"] as! String, "username": "bob"])
        }
    }

    @Test func directedMessageArrivesUnchangedWithFromSet() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = WSTestPeer.connect(port: port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            _ = try await a.nextJSON()  // joined
            b.send(#"{"event":"offer","to":"\#(aID)","data":{"sdp":"v=0\r\n","n":[1,2.5e3,null,true]},"from":"forged"}"#)
            let m = try await a.nextJSON()
            #expect(m["event"] as? String == "offer")
            #expect(m["from"] as? String == bID)
            #expect(m["to"] as? String == aID)
            let data = try #require(m["data"] as? [String: Any])
            #expect(data["sdp"] as? String == "v=0\r\n")
            #expect((data["n"] as? [Any])?.count == 4)
        }
    }

    @Test func leaveIsAnnouncedToTheOthers() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            _ = try await a.nextJSON()
            b.close()
            try await b.expectClosed()
            let left = try await a.nextJSON()
            #expect(left["event"] as? String == "left")
            #expect((left["data"] as? [String: String]) == ["peer_id": bID, "username": "bob"])
        }
    }

    @Test func aClientThatHalfClosesWithoutACloseFrameIsAwayAtOnceAndLeftWhenItsResumeWindowEnds() async throws {
        // A killed browser's kernel sends FIN and no WebSocket close frame. Keepalive is off in these
        // tests, so only the FIN itself can end the socket; the session is held for the resume window.
        try await withSignaling(configure: { $0.resumeWindow = .seconds(1) }) { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let (raw, head) = try #require(await rawWebSocket(port: port, path: "/websocket/room1"))
            #expect(head.hasPrefix("HTTP/1.1 101"))
            raw.send(clientFrame(0x1, Array(#"{"event":"authenticate","data":{"username":"bob","password":"pw"}}"#.utf8)))
            let joined = try await a.nextJSON()
            #expect(joined["event"] as? String == "joined")
            let bID = try #require((joined["data"] as? [String: String])?["peer_id"])

            raw.shutdownWrite()
            let away = try await a.nextJSON()
            #expect(away["event"] as? String == "peer_away")
            #expect((away["data"] as? [String: String]) == ["peer_id": bID, "username": "bob"])
            #expect(await offPool { raw.drainUntilClosed() }, "the server closes its side too")
            let left = try await a.nextJSON(timeout: .seconds(5))
            #expect(left["event"] as? String == "left")
            #expect((left["data"] as? [String: String]) == ["peer_id": bID, "username": "bob"])
        }
    }

    @Test func wrongPasswordIsUnauthorizedAndClosed() async throws {
        try await withSignaling { server, port in
            let a = WSTestPeer.connect(port: port)
            a.authenticate("alice", "nope")
            #expect(try await a.nextJSON()["event"] as? String == "unauthorized")
            try await a.expectClosed()
            #expect(server.hub.stats.authFailures.value == 1)
        }
    }

    @Test func aMessageBeforeAuthenticateIsUnauthorized() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            a.send(#"{"event":"offer","to":"x","data":{}}"#)
            #expect(try await a.nextJSON()["event"] as? String == "unauthorized")
            try await a.expectClosed()
        }
    }

    @Test func socketThatNeverAuthenticatesIsClosedAfterTheDeadline() async throws {
        try await withSignaling(configure: { $0.authTimeout = .milliseconds(300) }) { server, port in
            let a = WSTestPeer.connect(port: port)
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
            #expect(try await a.nextJSON()["event"] as? String == "unauthorized")
            try await a.expectClosed()
            #expect(server.hub.stats.authTimeouts.value == 1)
        }
    }

    @Test func textPingIsAnsweredPongBeforeAndAfterAuthentication() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
            _ = try await a.join("alice")
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
        }
    }

    @Test func unknownPeerIsAnErrorAndTheConnectionStaysOpen() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            a.send(#"{"event":"offer","to":"nobody","data":{}}"#)
            let e = try await a.nextJSON()
            #expect(e["event"] as? String == "error")
            #expect((e["data"] as? [String: String])?["code"] == "unknown_peer")
            #expect((e["data"] as? [String: String])?["to"] == "nobody")
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
        }
    }

    @Test func aPeerInAnotherRoomIsUnknown() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port, room: "one")
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: port, room: "two")
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            a.send(#"{"event":"offer","to":"\#(bID)"}"#)
            #expect(((try await a.nextJSON())["data"] as? [String: String])?["code"] == "unknown_peer")
            b.send("ping")
            #expect(try await b.next() == .text("pong"))  // and b received nothing before it
        }
    }

    @Test func invalidJSONMissingToBinaryAndOversizedEachGetTheirError() async throws {
        try await withSignaling(configure: { $0.maxMessageSize = 1024 }) { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            func code() async throws -> String? {
                let e = try await a.nextJSON()
                return e["event"] as? String == "error" ? (e["data"] as? [String: String])?["code"] : e["event"] as? String
            }
            a.send("{not json")
            #expect(try await code() == "invalid_json")
            a.send(#"{"event":"offer","data":{}}"#)
            #expect(try await code() == "invalid_message")
            a.send(#"[1,2]"#)
            #expect(try await code() == "invalid_message")
            a.sendBinary([1, 2, 3])
            #expect(try await code() == "binary_not_supported")
            a.send(String(repeating: "x", count: 2000))
            #expect(try await code() == "message_too_large")
            a.sendFragmented([String(repeating: "y", count: 800), String(repeating: "z", count: 800)])
            #expect(try await code() == "message_too_large")
            a.send(#"{"event":"authenticate","data":{"username":"alice","password":"pw"}}"#)
            #expect(try await code() == "already_authenticated")
            a.send("ping")
            #expect(try await a.next() == .text("pong"))
        }
    }

    @Test func fragmentedMessageIsReassembled() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = WSTestPeer.connect(port: port)
            _ = try await b.join("bob")
            _ = try await a.nextJSON()
            b.sendFragmented([#"{"event":"candidate","#, #""to":"\#(aID)","#, #""data":{"c":"x"}}"#])
            let m = try await a.nextJSON()
            #expect(m["event"] as? String == "candidate")
        }
    }

    @Test func broadcastReachesEveryOtherPeerInTheRoomOnly() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: port)
            _ = try await b.join("bob")
            let c = WSTestPeer.connect(port: port)
            let cID = try #require(try await c.join("carol")["peer_id"] as? String)
            let other = WSTestPeer.connect(port: port, room: "elsewhere")
            _ = try await other.join("alice")
            _ = try await a.nextJSON(); _ = try await a.nextJSON(); _ = try await b.nextJSON()  // joined events
            c.send(#"{"event":"hello","to":"*","data":1}"#)
            for p in [a, b] {
                let m = try await p.nextJSON()
                #expect(m["event"] as? String == "hello")
                #expect(m["from"] as? String == cID)
            }
            for p in [c, other] {
                p.send("ping")
                #expect(try await p.next() == .text("pong"))  // nothing arrived before the pong
            }
        }
    }

    @Test func aRefusedWebSocketUpgradeIsAnsweredNotDropped() async throws {
        try await withSignaling { _, port in
            let long = "/websocket/" + String(repeating: "r", count: 65)
            let cases = [("/websocket/a%20b", "websocket", "400"), (long, "websocket", "400"), ("/elsewhere", "websocket", "404"),
                         ("/websocket/fine", "h2c", "426")]
            for (path, proto, status) in cases {
                let s = try #require(TCPTestSocket(port: UInt16(port), timeoutMilliseconds: 10_000))
                s.send(upgradeRequest(path, upgrade: proto))
                let line = await offPool { s.receive(count: 12) }.map { String(decoding: $0, as: UTF8.self) }
                #expect(line == "HTTP/1.1 \(status)", "\(path)")
            }
        }
    }

    @Test func invalidRoomNameIsRefusedWith400() async throws {
        try await withSignaling { _, port in
            let bad = try await http("GET", port, "/websocket/" + String(repeating: "r", count: 65), token: nil)
            #expect(bad.status == 400)
            let bad2 = try await http("GET", port, "/websocket/a%20b", token: nil)
            #expect(bad2.status == 400)
            let plain = try await http("GET", port, "/websocket/fine", token: nil)
            #expect(plain.status == 426)
        }
    }
}
