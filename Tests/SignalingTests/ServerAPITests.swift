import Foundation
import SignalingTestSupport
import Testing
@testable import Signaling

/// The `/api/` server API for app backends, and its Swift counterpart on the hub.
@Suite struct ServerAPITests {
    @Test func everyAPIRouteRefusesAMissingOrWrongToken() async throws {
        try await withSignaling { _, port in
            for (method, path) in [("GET", "/api/rooms/r/peers"), ("POST", "/api/rooms/r/publish"),
                                   ("POST", "/api/peers/p/send"), ("DELETE", "/api/peers/p")] {
                let missing = try await http(method, port, path, token: nil)
                let wrong = try await http(method, port, path, token: "wrong")
                #expect(missing.status == 401)
                #expect(wrong.status == 401)
            }
        }
    }

    @Test func emptyConfiguredTokenDisablesTheAPI() async throws {
        try await withSignaling(configure: { $0.apiToken = "" }) { _, port in
            let r = try await http("GET", port, "/api/rooms/r/peers", token: "")
            #expect(r.status == 401)
        }
    }

    @Test func listPublishSendAndKick() async throws {
        try await withSignaling { _, port in
            let a = WSTestPeer.connect(port: port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = WSTestPeer.connect(port: port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            _ = try await a.nextJSON()

            let list = try await http("GET", port, "/api/rooms/room1/peers")
            #expect(list.status == 200)
            let peers = try JSONSerialization.jsonObject(with: Data(list.body.utf8)) as! [String: Any]
            #expect(Set((peers["peers"] as! [[String: String]]).map { $0["peer_id"]! }) == [aID, bID])

            let pub = try await http("POST", port, "/api/rooms/room1/publish", body: #"{"event":"notice","data":{"text":"hi"}}"#)
            #expect(pub.status == 200)
            #expect(pub.body == #"{"delivered":2}"#)
            for p in [a, b] {
                let m = try await p.nextJSON()
                #expect(m["event"] as? String == "notice")
                #expect(m["from"] as? String == "server")
                #expect((m["data"] as? [String: String])?["text"] == "hi")
            }

            #expect(try await http("POST", port, "/api/peers/\(aID)/send", body: #"{"event":"direct"}"#).status == 200)
            #expect(try await a.nextJSON()["event"] as? String == "direct")
            #expect(try await http("POST", port, "/api/peers/nobody/send", body: #"{"event":"direct"}"#).status == 404)
            #expect(try await http("POST", port, "/api/peers/\(aID)/send", body: #"{"data":1}"#).status == 400)
            #expect(try await http("POST", port, "/api/peers/\(aID)/send", body: "not json").status == 400)

            #expect(try await http("DELETE", port, "/api/peers/\(bID)").status == 204)
            let kicked = try await b.nextJSON()
            #expect((kicked["data"] as? [String: String])?["code"] == "kicked")
            try await b.expectClosed()
            let left = try await a.nextJSON()
            #expect(left["event"] as? String == "left")
            #expect(try await http("DELETE", port, "/api/peers/\(bID)").status == 404)
            // JSON members in any order (the body is encoded through Codable).
            let empty = try JSONSerialization.jsonObject(with: Data(try await http("GET", port, "/api/rooms/empty/peers").body.utf8)) as? NSDictionary
            #expect(empty == ["room": "empty", "peers": [Any]()] as NSDictionary)
        }
    }
}
