import Auth
import Foundation
import Synchronization
@testable import Signaling
import SignalingTestSupport
import StunTurn
import Testing
import TurnTestSupport
@testable import Cluster

/// Rooms that span instances: several instances in this process, one real nats-server, and
/// hummingbird-websocket clients on different instances.
@Suite(.serialized) struct RoomsAcrossInstancesTests {
    @Test func theRosterJoinedAndLeftSpanInstances() async throws {
        try await withCluster(3) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = WSTestPeer.connect(port: i[1].port)
            let bData = try await b.join("bob")
            let bID = try #require(bData["peer_id"] as? String)
            #expect((bData["peers"] as? [[String: Any]])?.compactMap { $0["peer_id"] as? String } == [aID])
            let joined = try await a.nextJSON()
            #expect(joined["event"] as? String == "joined")
            #expect((joined["data"] as? [String: Any])?["peer_id"] as? String == bID)
            let c = WSTestPeer.connect(port: i[2].port)
            let cPeers = try #require(try await c.join("carol")["peers"] as? [[String: Any]])
            #expect(Set(cPeers.compactMap { $0["peer_id"] as? String }) == [aID, bID])
            _ = try await a.nextJSON()  // carol joined
            _ = try await b.nextJSON()
            b.close()
            for peer in [a, c] {
                let left = try await peer.nextJSON()
                #expect(left["event"] as? String == "left")
                #expect((left["data"] as? [String: Any])?["peer_id"] as? String == bID)
            }
        }
    }

    @Test func directedAndBroadcastMessagesCrossInstancesWithFromAndInOrder() async throws {
        try await withCluster(2) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = WSTestPeer.connect(port: i[1].port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            _ = try await a.nextJSON()  // joined
            for n in 0..<1000 { a.send(#"{"event":"n","to":"\#(bID)","data":\#(n)}"#) }
            for n in 0..<1000 {
                let m = try await b.nextJSON()
                #expect(m["from"] as? String == aID)
                guard m["data"] as? Int == n else {
                    Issue.record("message \(n) arrived as \(m)")
                    return
                }
            }
            b.send(#"{"event":"all","to":"*","data":{"x":1}}"#)
            let broadcast = try await a.nextJSON()
            #expect(broadcast["event"] as? String == "all" && broadcast["from"] as? String == bID)
            a.send(#"{"event":"x","to":"nobody-here","data":1}"#)
            let error = try await a.nextJSON()
            #expect((error["data"] as? [String: Any])?["code"] as? String == "unknown_peer")
            // A peer of the same id in another room is not a recipient.
            let other = WSTestPeer.connect(port: i[1].port, room: "other")
            let otherID = try #require(try await other.join("carol")["peer_id"] as? String)
            a.send(#"{"event":"x","to":"\#(otherID)","data":1}"#)
            #expect(((try await a.nextJSON())["data"] as? [String: Any])?["code"] as? String == "unknown_peer")
        }
    }

    @Test func theRoomCapHoldsAcrossInstances() async throws {
        try await withCluster(2, configure: { $0.maxPeersPerRoom = 2 }) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: i[1].port)
            _ = try await b.join("bob")
            _ = try await a.nextJSON()
            try await waitUntil("instance 0 knows bob") { i[0].hub.peers(in: "room1").count == 2 }
            let c = WSTestPeer.connect(port: i[0].port)
            c.authenticate("carol")
            let refused = try await c.nextJSON()
            #expect((refused["data"] as? [String: Any])?["code"] as? String == "room_full")
            try await c.expectClosed()
        }
    }

    @Test func simultaneousJoinsOverTheCapKeepTheEarlierOne() async throws {
        try await withCluster(2, configure: { $0.maxPeersPerRoom = 1 }) { _, i in
            // Both logins go out at once, each to its own instance: both may be admitted for an instant;
            // once each instance hears of the other join, the later one (by time, then peer id) is refused.
            let a = WSTestPeer.connect(port: i[0].port)
            let b = WSTestPeer.connect(port: i[1].port)
            a.authenticate("alice")
            b.authenticate("bob")
            var outcomes: [String] = []
            for peer in [a, b] {
                var events: [String] = []
                while let e = try? await peer.next(timeout: .seconds(3)) {
                    if case .text(let s) = e,
                       let m = try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] {
                        events.append((m["data"] as? [String: Any])?["code"] as? String ?? m["event"] as? String ?? "?")
                    } else {
                        events.append("closed")
                        break
                    }
                }
                outcomes.append(events.contains("room_full") ? "refused" : "stayed")
            }
            #expect(outcomes.sorted() == ["refused", "stayed"], "\(outcomes)")
            try await waitUntil("one peer left in the room, seen alike from both instances") {
                i[0].hub.peers(in: "room1").count == 1 && i[1].hub.peers(in: "room1").count == 1
            }
            #expect(i[0].hub.peers(in: "room1") == i[1].hub.peers(in: "room1"))
        }
    }

    @Test func replaceHoldsAcrossInstances() async throws {
        try await withCluster(2, configure: { $0.duplicateUsername = .replace }) { _, i in
            let watcher = WSTestPeer.connect(port: i[1].port)
            _ = try await watcher.join("bob")
            let first = WSTestPeer.connect(port: i[0].port)
            let firstID = try #require(try await first.join("alice")["peer_id"] as? String)
            _ = try await watcher.nextJSON()  // joined
            let second = WSTestPeer.connect(port: i[1].port)
            let data = try await second.join("alice")
            let roster = (data["peers"] as? [[String: Any]])?.compactMap { $0["peer_id"] as? String } ?? []
            #expect(!roster.contains(firstID), "the session being replaced is not in the roster")
            let replaced = try await first.nextJSON()
            #expect((replaced["data"] as? [String: Any])?["code"] as? String == "replaced")
            try await first.expectClosed()
            var sawLeft = false
            while let m = try? await watcher.nextJSON(timeout: .seconds(2)) {
                if m["event"] as? String == "left", (m["data"] as? [String: Any])?["peer_id"] as? String == firstID { sawLeft = true }
            }
            #expect(sawLeft)
        }
    }

    @Test func theServerAPIOnAnyInstanceActsOnTheWholeCluster() async throws {
        try await withCluster(3, turnOn: [1]) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            let aData = try await a.join("alice")
            let aID = try #require(aData["peer_id"] as? String)
            let b = WSTestPeer.connect(port: i[1].port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            _ = try await a.nextJSON()
            // Alice's TURN credential, minted on instance 0, used on instance 1's TURN.
            let ice = try #require(aData["ice_servers"] as? [[String: Any]])
            let turnEntry = try #require(ice.first { $0["username"] != nil })
            let client = TurnTestClient(serverPort: try #require(i[1].turnPort),
                                        username: try #require(turnEntry["username"] as? String),
                                        password: try #require(turnEntry["credential"] as? String))
            #expect(client.allocate()?.messageClass == .successResponse)
            #expect(i[1].turn!.stats.allocationsActive.value == 1)

            let api = i[2].port
            let peers = try await http("GET", api, "/api/rooms/room1/peers")
            #expect(peers.status == 200 && peers.body.contains(aID) && peers.body.contains(bID))
            let published = try await http("POST", api, "/api/rooms/room1/publish", body: #"{"event":"news","data":1}"#)
            #expect(published.body == #"{"delivered":2}"#)
            for peer in [a, b] {
                let m = try await peer.nextJSON()
                #expect(m["event"] as? String == "news" && m["from"] as? String == "server")
            }
            #expect(try await http("POST", api, "/api/peers/\(bID)/send", body: #"{"event":"dm"}"#).status == 200)
            #expect(try await b.nextJSON()["event"] as? String == "dm")

            #expect(try await http("DELETE", api, "/api/peers/\(aID)").status == 204)
            let kicked = try await a.nextJSON()
            #expect((kicked["data"] as? [String: Any])?["code"] as? String == "kicked")
            try await a.expectClosed()
            // The session's allocation on instance 1's TURN ends with it, and its credential is refused.
            let released = ContinuousClock.now
            try await waitUntil("instance 1 released alice's allocation", timeout: .seconds(1)) {
                i[1].turn!.stats.allocationsActive.value == 0
            }
            #expect(ContinuousClock.now - released < .seconds(1))
            let again = TurnTestClient(serverPort: i[1].turnPort!, username: client.username, password: client.password)
            #expect(again.allocate()?.errorCode?.code == 401)
            #expect(try await http("DELETE", api, "/api/peers/\(aID)").status == 404)
        }
    }

    @Test func anInstanceThatDiesIsDeclaredDeadItsPeersLeftAndTheirCredentialsRefused() async throws {
        try await withCluster(3, turnOn: [2]) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: i[1].port)
            let bData = try await b.join("bob")
            let bID = try #require(bData["peer_id"] as? String)
            _ = try await a.nextJSON()
            let turnEntry = try #require((bData["ice_servers"] as? [[String: Any]])?.first { $0["username"] != nil })
            let client = TurnTestClient(serverPort: i[2].turnPort!, username: turnEntry["username"] as! String,
                                        password: turnEntry["credential"] as! String)
            #expect(client.allocate()?.messageClass == .successResponse)
            let died = ContinuousClock.now
            await i[1].crash()
            let left = try await a.nextJSON(timeout: .seconds(6))
            #expect(left["event"] as? String == "left" && (left["data"] as? [String: Any])?["peer_id"] as? String == bID)
            #expect(ContinuousClock.now - died < .seconds(4), "within cluster.instance_timeout (2 s) and a sweep")
            try await waitUntil("instance 2 released bob's allocation") { i[2].turn!.stats.allocationsActive.value == 0 }
            let again = TurnTestClient(serverPort: i[2].turnPort!, username: client.username, password: client.password)
            #expect(again.allocate()?.errorCode?.code == 401)
            #expect(i[0].node.stats.deadInstances.value == 1)
        }
    }

    @Test func whileNATSIsDownRemotePeersAreUnreachableAndAfterItRestartsMessagesFlowAgain() async throws {
        try await withCluster(2) { nats, i in
            let a = WSTestPeer.connect(port: i[0].port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: i[1].port)
            let bID = try #require(try await b.join("bob")["peer_id"] as? String)
            _ = try await a.nextJSON()
            nats.stop()
            try await waitUntil("instance 0 sees the link down") { !i[0].node.isLinked }
            a.send(#"{"event":"x","to":"\#(bID)","data":1}"#)
            let error = try await a.nextJSON()
            #expect((error["data"] as? [String: Any])?["code"] as? String == "peer_unreachable")
            try await Task.sleep(for: .seconds(3))  // longer than cluster.instance_timeout: the outage under test
            #expect(i[0].hub.peers(in: "room1").count == 2, "no one is declared dead while the link is down")
            try nats.start()
            try await waitUntil("both instances linked again") { i[0].node.isLinked && i[1].node.isLinked }
            try await waitUntil("instance 0 heard from instance 1 again") { i[0].node.instances().count == 2 }
            a.send(#"{"event":"x","to":"\#(bID)","data":2}"#)
            let m = try await b.nextJSON()
            #expect(m["data"] as? Int == 2)
            #expect(i[0].node.stats.resyncs.value == 2)
        }
    }

    @Test func aSessionDroppedOnOneInstanceResumesOnAnotherWithItsMissedMessages() async throws {
        try await withCluster(3) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            let aID = try #require(try await a.join("alice")["peer_id"] as? String)
            let b = try await RawPeer(port: i[1].port)
            let welcome = (try await b.login("bob"))["data"] as? [String: Any] ?? [:]
            let bID = try #require(welcome["peer_id"] as? String)
            let token = try #require(welcome["resume_token"] as? String)
            #expect(token.hasPrefix("i1."))
            _ = try await a.nextJSON()  // joined
            b.drop()
            #expect(try await a.nextJSON()["event"] as? String == "peer_away")
            for n in 0..<10 { a.send(#"{"event":"n","to":"\#(bID)","data":\#(n)}"#) }
            try await waitUntil("instance 1 queued them") { i[1].hub.state.withLock { $0.peers[bID]?.held?.queuedCount } == 10 }

            // The new socket lands on another instance (a load balancer does not know the old one).
            let again = try await RawPeer(port: i[2].port)
            let resumed = try await again.resume(token)
            #expect(resumed["event"] as? String == "resumed")
            let data = resumed["data"] as? [String: Any] ?? [:]
            #expect(data["peer_id"] as? String == bID && data["replayed"] as? Int == 10)
            #expect((data["peers"] as? [[String: Any]])?.compactMap { $0["peer_id"] as? String } == [aID])
            for n in 0..<10 { #expect(try await again.next()["data"] as? Int == n) }
            let back = try await a.nextJSON()
            #expect(back["event"] as? String == "peer_back", "nothing announced as left: \(back)")
            // It is reached on its new instance, from everywhere.
            a.send(#"{"event":"after","to":"\#(bID)","data":1}"#)
            #expect(try await again.next()["event"] as? String == "after")
            try await waitUntil("every instance sees one bob in the room") {
                i.allSatisfy { $0.hub.peers(in: "room1").filter { $0.peerID == bID }.count == 1 }
            }
            #expect(i[1].hub.localPeers().isEmpty && i[2].hub.localPeers().count == 1)
        }
    }

    @Test func joinAndLeaveHooksFireOnceOnTheOwningInstance() async throws {
        let recorders = (0..<2).map { _ in HookRecorder() }
        try await withCluster(2, hooks: { [recorders[$0]] }) { _, i in
            let a = WSTestPeer.connect(port: i[0].port)
            _ = try await a.join("alice")
            let b = WSTestPeer.connect(port: i[1].port)
            _ = try await b.join("bob")
            _ = try await a.nextJSON()
            b.close()
            _ = try await a.nextJSON()
            try await waitUntil("the hooks ran") { recorders[1].events.count == 2 }
            #expect(recorders[0].events == ["joined alice"])
            #expect(recorders[1].events == ["joined bob", "left bob"])
        }
    }
}

final class HookRecorder: SignalingHooks, Sendable {
    private let recorded = Mutex<[String]>([])
    var events: [String] { recorded.withLock { $0 } }
    func peerJoined(_ event: RoomEvent) async throws { recorded.withLock { $0.append("joined \(event.peer.username)") } }
    func peerLeft(_ event: RoomEvent) async throws { recorded.withLock { $0.append("left \(event.peer.username)") } }
}
