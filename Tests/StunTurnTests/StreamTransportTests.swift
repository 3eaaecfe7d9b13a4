import Glibc
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
            #expect(server.stats.allocationsActive.value == 1)

            tcp = try #require(TCPTestSocket(port: port))  // the first connection is closed here
            let deadline = ContinuousClock.now + .seconds(1)
            while server.stats.allocationsActive.value != 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))  // the server's own count, read until it changes
            }
            #expect(server.stats.allocationsActive.value == 0)
        }
    }

    @Test func aConnectionWithoutAnAllocationIsClosedOnceSilentForTheIdleTimeout() async throws {
        try await withTurnServer(configure: { $0.streamIdleTimeout = .seconds(1) }) { server, port in
            let silent = try #require(TCPTestSocket(port: port, timeoutMilliseconds: 10_000))
            // Messages restart the clock: Binding requests 250 ms apart keep this one open for 2 s.
            let talking = try #require(TCPTestSocket(port: port, timeoutMilliseconds: 10_000))
            for _ in 0..<8 {
                let m = StunMessage(method: .binding, messageClass: .request)
                talking.send(m.encode())
                #expect(try StunMessage(decoding: try #require(talking.receiveStun())).transactionID == m.transactionID)
                // Pacing the activity, not synchronisation; blocking like the socket calls around it, so that
                // a cooperative pool busy with other tests cannot stretch the pause past the idle timeout.
                usleep(250_000)
            }
            #expect(silent.isClosedByPeer(), "a client that never sent a byte is gone")
            #expect(talking.isClosedByPeer(), "and so is the talking one once it falls silent")
            #expect(server.stats.idleStreamsClosed.value == 2)
        }
    }

    @Test func anAllocationKeepsItsConnectionPastTheIdleTimeoutUntilItIsDeleted() async throws {
        try await withTurnServer(configure: { $0.streamIdleTimeout = .seconds(1) }) { server, port in
            let signer = TurnTestClient(serverPort: port)
            let tcp = try #require(TCPTestSocket(port: port, timeoutMilliseconds: 10_000))
            func request(_ m: StunMessage) throws -> StunMessage {
                tcp.send(signer.signed(m))
                return try StunMessage(decoding: try #require(tcp.receiveStun()))
            }
            let probe = TurnTestClient.allocateRequest()
            tcp.send(probe.encode())
            signer.learn(try StunMessage(decoding: try #require(tcp.receiveStun())))
            #expect(try request(TurnTestClient.allocateRequest()).messageClass == .successResponse)

            try await Task.sleep(for: .milliseconds(2500))  // the time under test: two and a half timeouts
            var refresh = StunMessage(method: .refresh, messageClass: .request)
            refresh.appendLifetime(0)
            #expect(try request(refresh).messageClass == .successResponse, "still open, allocation and all")
            #expect(server.stats.idleStreamsClosed.value == 0)
            #expect(tcp.isClosedByPeer(), "without its allocation the connection is idle again, and goes")
            #expect(server.stats.idleStreamsClosed.value == 1)
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

/// RFC 6062 TCP allocations against the real server, with a TCP peer of the test's own.
@Suite(.serialized) struct TCPAllocationTests {
    /// A client on one TCP control connection, signing with `signer`'s learned realm and nonce.
    final class StreamClient {
        let signer: TurnTestClient
        let socket: TCPTestSocket

        init?(port: UInt16) {
            signer = TurnTestClient(serverPort: port)
            guard let s = TCPTestSocket(port: port) else { return nil }
            socket = s
        }

        func request(_ m: StunMessage) throws -> StunMessage {
            if signer.realm.isEmpty {
                socket.send(m.encode())
                let challenge = try StunMessage(decoding: try #require(socket.receiveStun()))
                signer.learn(challenge)
            }
            var again = m
            again.transactionID = .random()
            socket.send(signer.signed(again))
            return try StunMessage(decoding: try #require(socket.receiveStun()))
        }
    }

    static func connect(_ peer: UInt16) -> StunMessage {
        var m = StunMessage(method: .connect, messageClass: .request)
        m.appendXorAddress(AttributeType.xorPeerAddress, TransportAddress(ip: IPAddress("127.0.0.1")!, port: peer))
        return m
    }

    @Test func tcpAllocationIsOnlyForStreamClients() async throws {
        try await withTurnServer { _, port in
            let udp = TurnTestClient(serverPort: port)
            #expect(udp.request(TurnTestClient.allocateRequest(transport: 6))?.errorCode?.code == 400)
            #expect(udp.request(TurnTestClient.allocateRequest(transport: 99))?.errorCode?.code == 442)
        }
    }

    @Test func connectThenConnectionBindMakesAPipeToThePeer() async throws {
        try await withTurnServer(configure: { $0.allowLoopbackPeers() }) { _, port in
            let peerListener = try #require(TCPTestListener())
            let control = try #require(StreamClient(port: port))
            #expect(try control.request(TurnTestClient.allocateRequest(transport: 6)).messageClass == .successResponse)
            let connected = try control.request(Self.connect(peerListener.port))
            #expect(connected.messageClass == .successResponse)
            let id = try #require(connected.connectionID)
            let peer = try #require(peerListener.accept())
            // §5.2: one connection per peer → 446 for a second Connect.
            #expect(try control.request(Self.connect(peerListener.port)).errorCode?.code == 446)

            // The peer may speak first: its bytes wait for the data connection.
            peer.send(Array("early".utf8))
            let data = try #require(StreamClient(port: port))
            var bind = StunMessage(method: .connectionBind, messageClass: .request)
            bind.appendConnectionID(id)
            #expect(try data.request(bind).messageClass == .successResponse)
            #expect(data.socket.receive(count: 5) == Array("early".utf8))
            data.socket.send(Array("hello peer".utf8))
            #expect(peer.receive(count: 10) == Array("hello peer".utf8))
            peer.send(Array("hello client".utf8))
            #expect(data.socket.receive(count: 12) == Array("hello client".utf8))

            // A second ConnectionBind for the same id, and an unknown id: 400.
            let again = try #require(StreamClient(port: port))
            #expect(try again.request(bind).errorCode?.code == 400)
            var unknown = StunMessage(method: .connectionBind, messageClass: .request)
            unknown.appendConnectionID(id &+ 1)
            let other = try #require(StreamClient(port: port))
            #expect(try other.request(unknown).errorCode?.code == 400)

            // Closing the data connection closes the peer's.
            data.socket.shutdown()
            #expect(peer.isClosedByPeer())
        }
    }

    @Test func aPeerThatDoesNotReadSlowsTheClientDownInsteadOfFillingServerMemory() async throws {
        try await withTurnServer(configure: { $0.allowLoopbackPeers() }) { _, port in
            let peerListener = try #require(TCPTestListener())
            let control = try #require(StreamClient(port: port))
            #expect(try control.request(TurnTestClient.allocateRequest(transport: 6)).messageClass == .successResponse)
            let id = try #require(try control.request(Self.connect(peerListener.port)).connectionID)
            let peer = try #require(peerListener.accept())  // and never reads
            let data = try #require(StreamClient(port: port))
            var bind = StunMessage(method: .connectionBind, messageClass: .request)
            bind.appendConnectionID(id)
            #expect(try data.request(bind).messageClass == .successResponse)
            // Socket buffers on the way hold some megabytes; without backpressure the server would take all 96.
            let pushed = data.socket.push(total: 96 << 20, timeoutMilliseconds: 1000)
            #expect(pushed > 0)
            #expect(pushed < 48 << 20, "the server kept reading from the client: \(pushed >> 20) MiB")
            _ = peer
        }
    }

    @Test func connectToAForbiddenOrUnreachablePeerFails() async throws {
        try await withTurnServer { _, port in
            let control = try #require(StreamClient(port: port))
            #expect(try control.request(TurnTestClient.allocateRequest(transport: 6)).messageClass == .successResponse)
            #expect(try control.request(Self.connect(9)).errorCode?.code == 403)  // loopback, denied by default
        }
        try await withTurnServer(configure: { $0.allowLoopbackPeers() }) { _, port in
            let control = try #require(StreamClient(port: port))
            #expect(try control.request(TurnTestClient.allocateRequest(transport: 6)).messageClass == .successResponse)
            let closedPort = UInt16(try #require(TCPTestListener()).port)  // listener gone when this line ends
            #expect(try control.request(Self.connect(closedPort)).errorCode?.code == 447)
        }
    }
}
