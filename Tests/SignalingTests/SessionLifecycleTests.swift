import Auth
import Foundation
import Logging
import NIOPosix
import StunTurn
import SignalingTestSupport
import Testing
import TurnTestSupport
@testable import Signaling

/// One process, one lifecycle for a peer: the TURN credentials minted for a signaling session work
/// while it lasts; when it ends (leave or kick) they are refused and its allocations are released.
@Suite(.serialized) struct SessionLifecycleTests {
    func withBothHalves(_ body: (SignalingServer, Int, TurnServer, UInt16) async throws -> Void) async throws {
        try await withSignalingAndTurn(body)
    }

    func turnCredential(_ authenticated: [String: Any]) throws -> (String, String) {
        let ice = try #require(authenticated["ice_servers"] as? [[String: Any]])
        let turn = try #require(ice.first { $0["username"] != nil })
        return (try #require(turn["username"] as? String), try #require(turn["credential"] as? String))
    }

    /// The TURN server's own count, read until it reaches `expected` or a second has passed.
    func activeAllocations(_ turn: TurnServer, reach expected: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline {
            if turn.stats.allocationsActive.value == expected { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return turn.stats.allocationsActive.value == expected
    }

    @Test func kickRevokesTheSessionCredentialsAndReleasesItsAllocationsWithinASecond() async throws {
        try await withBothHalves { server, port, turn, turnPort in
            let a = WSTestPeer.connect(port: port)
            let data = try await a.join("alice")
            let peerID = try #require(data["peer_id"] as? String)
            let (user, pass) = try turnCredential(data)
            #expect(((data["ice_servers"] as? [[String: Any]])?[0]["urls"] as? [String]) == ["stun:127.0.0.1:\(turnPort)"])

            let client = TurnTestClient(serverPort: turnPort, username: user, password: pass)
            #expect(client.allocate()?.messageClass == .successResponse)
            #expect(turn.stats.allocationsActive.value == 1)

            #expect(server.hub.kick(peerID))
            #expect(((try await a.nextJSON())["data"] as? [String: String])?["code"] == "kicked")
            try await a.expectClosed()
            #expect(await activeAllocations(turn, reach: 0))
            #expect(client.refresh(lifetime: 600)?.messageClass == .errorResponse)
            // The same credentials no longer open a new allocation.
            let again = TurnTestClient(serverPort: turnPort, username: user, password: pass)
            #expect(again.allocate()?.errorCode?.code == 401)
        }
    }

    @Test func leavingReleasesOnlyThatPeersAllocations() async throws {
        try await withBothHalves { _, port, turn, turnPort in
            let a = WSTestPeer.connect(port: port)
            let (aUser, aPass) = try turnCredential(try await a.join("alice"))
            let b = WSTestPeer.connect(port: port)
            let (bUser, bPass) = try turnCredential(try await b.join("bob"))
            #expect(try await a.nextJSON()["event"] as? String == "joined")
            let aClient = TurnTestClient(serverPort: turnPort, username: aUser, password: aPass)
            let bClient = TurnTestClient(serverPort: turnPort, username: bUser, password: bPass)
            #expect(aClient.allocate()?.messageClass == .successResponse)
            #expect(bClient.allocate()?.messageClass == .successResponse)

            b.close()
            try await b.expectClosed()
            #expect(try await a.nextJSON()["event"] as? String == "left")
            #expect(await activeAllocations(turn, reach: 1))
            #expect(aClient.refresh(lifetime: 600)?.messageClass == .successResponse)
            #expect(bClient.refresh(lifetime: 600)?.messageClass == .errorResponse)
        }
    }
}
