import NIOCore
import Testing
import TurnTestSupport
@testable import StunTurn

/// STUN/TURN over TCP against the real server (RFC 8656 §3.1, §5).
@Suite(.serialized) struct StreamTransportTests {
    @Test func bindingOverTCPAnswersWithTheConnectionsAddress() async throws {
        try await withTurnServer { _, port in
            let tcp = try #require(TCPTestSocket(port: port))
            let m = StunMessage(method: .binding, messageClass: .request)
            tcp.send(m.encode(fingerprint: true))
            let r = try StunMessage(decoding: try #require(tcp.receiveStun()))
            #expect(r.messageClass == .successResponse)
            #expect(r.transactionID == m.transactionID)
            #expect(r.xorAddress(AttributeType.xorMappedAddress)?.ip == IPAddress("127.0.0.1"))
        }
    }

    @Test func allocationOverTCPIsReleasedWhenTheConnectionCloses() async throws {
        try await withTurnServer { server, port in
            let signer = TurnTestClient(serverPort: port)
            var tcp = try #require(TCPTestSocket(port: port))
            let probe = TurnTestClient.allocateRequest()
            tcp.send(probe.encode())
            let challenge = try StunMessage(decoding: try #require(tcp.receiveStun()))
            #expect(challenge.errorCode?.code == 401)
            signer.learn(challenge)
            let allocate = TurnTestClient.allocateRequest()
            tcp.send(signer.signed(allocate))
            let r = try StunMessage(decoding: try #require(tcp.receiveStun()))
            #expect(r.messageClass == .successResponse)
            #expect(server.shared.stats.allocationsActive.load(ordering: .relaxed) == 1)

            tcp = try #require(TCPTestSocket(port: port))  // the first connection is closed here
            let deadline = ContinuousClock.now + .seconds(1)
            while server.shared.stats.allocationsActive.load(ordering: .relaxed) != 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))  // the server's own count, read until it changes
            }
            #expect(server.shared.stats.allocationsActive.load(ordering: .relaxed) == 0)
        }
    }

    @Test func garbageOnTheStreamClosesThatConnectionOnly() async throws {
        try await withTurnServer { _, port in
            let bad = try #require(TCPTestSocket(port: port))
            bad.send([0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 7, count: 60))
            #expect(bad.isClosedByPeer())
            let good = try #require(TCPTestSocket(port: port))
            let m = StunMessage(method: .binding, messageClass: .request)
            good.send(m.encode())
            #expect(try StunMessage(decoding: try #require(good.receiveStun())).messageClass == .successResponse)
        }
    }
}
