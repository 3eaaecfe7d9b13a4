import Auth
import Foundation
import NIOCore
import Testing
import TurnTestSupport
@testable import StunTurn

/// What the adversarial review of the TURN half found (issue 24), over the real server on loopback: each
/// of these was let through before it was closed.
@Suite(.serialized) struct AdversarialReviewTests {
    // MARK: Attributes after MESSAGE-INTEGRITY (RFC 8489 §14.5)

    @Test func aSignedRefreshGivenLifetimeZeroAfterItsIntegrityDoesNotDeleteTheAllocation() async throws {
        try await withTurnServer { server, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.allocate()?.messageClass == .successResponse)
            // A signed Refresh without LIFETIME (which asks for the default lifetime), replayed with one.
            let refresh = StunMessage(method: .refresh, messageClass: .request)
            let replayed = StunMessage.appending(AttributeType.lifetime, [0, 0, 0, 0], to: c.signed(refresh))
            let r = try #require(c.exchange(replayed, transactionID: refresh.transactionID))
            #expect(r.messageClass == .successResponse)
            #expect(r.lifetime == 600, "what the integrity covers is what is obeyed: no LIFETIME, the default")
            #expect(server.stats.allocationsActive.value == 1)
        }
    }

    @Test func aSignedCreatePermissionGivenAPeerAfterItsIntegrityPermitsOnlyTheSignedPeer() async throws {
        try await withTurnServer(configure: { $0.peerPolicy = PeerAddressPolicy(allow: [CIDR("127.0.0.0/8")!]) }) { server, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.allocate()?.messageClass == .successResponse)
            let signedPeer = TransportAddress(ip: IPAddress("127.0.0.2")!, port: 9)
            let smuggled = TransportAddress(ip: IPAddress("127.0.0.3")!, port: 9)
            var smuggledAttribute = StunMessage(method: .binding, messageClass: .request)
            smuggledAttribute.appendXorAddress(AttributeType.xorPeerAddress, smuggled)
            let smuggledValue = smuggledAttribute.attributes[0].value  // XOR'd with the magic cookie only (IPv4)

            var m = StunMessage(method: .createPermission, messageClass: .request)
            m.appendXorAddress(AttributeType.xorPeerAddress, signedPeer)
            let replayed = StunMessage.appending(AttributeType.xorPeerAddress, smuggledValue, to: c.signed(m))
            #expect(c.exchange(replayed, transactionID: m.transactionID)?.messageClass == .successResponse)
            #expect(await server.allocations().first?.permissions == 1)

            // A request whose only peer comes after the integrity has no peer at all: 400.
            let empty = StunMessage(method: .createPermission, messageClass: .request)
            let onlyAfter = StunMessage.appending(AttributeType.xorPeerAddress, smuggledValue, to: c.signed(empty))
            #expect(c.exchange(onlyAfter, transactionID: empty.transactionID)?.errorCode?.code == 400)
            #expect(await server.allocations().first?.permissions == 1)
        }
    }

    // MARK: Relays to the host itself

    /// The external address stands in for a public interface address (loopback is refused anyway). No
    /// datagram is sent to it: the checks are on requests only.
    @Test func theHostsOwnAddressCanBePermittedButIsReachedOnlyAtRelayPorts() async throws {
        let own = IPAddress("203.0.113.7")!
        try await withTurnServer(configure: { $0.externalAddress = own }) { server, port in
            let c = TurnTestClient(serverPort: port)
            let allocated = try #require(c.allocate())
            #expect(allocated.xorAddress(AttributeType.xorRelayedAddress)?.ip == own)
            #expect(c.createPermission(TransportAddress(ip: own, port: 0))?.messageClass == .successResponse,
                    "relaying to another allocation on this server needs this permission")
            #expect(c.channelBind(0x4000, TransportAddress(ip: own, port: 5432))?.errorCode?.code == 403)
            #expect(c.channelBind(0x4001, TransportAddress(ip: IPAddress("::ffff:203.0.113.7")!, port: 22))?.errorCode?.code == 403)
            #expect(c.channelBind(0x4002, TransportAddress(ip: own, port: 23000))?.messageClass == .successResponse,
                    "a relay port: another client's relayed address")
            let before = server.stats.peerPolicyRejections.value
            c.sendIndication([1, 2, 3], to: TransportAddress(ip: own, port: 8080))
            let deadline = ContinuousClock.now + .seconds(2)
            while server.stats.peerPolicyRejections.value == before, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))  // the server's own count, read until it changes
            }
            #expect(server.stats.peerPolicyRejections.value == before + 1)
        }
    }

    @Test func aReloadThatRefusesAPeerWithdrawsItsPermissionAndChannelAtOnce() async throws {
        try await withTurnServer(configure: { $0.allowLoopbackPeers() }) { server, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.allocate()?.messageClass == .successResponse)
            let peer = UDPTestSocket()
            #expect(c.channelBind(0x4001, peer.address)?.messageClass == .successResponse)
            c.socket.send([0x40, 0x01, 0x00, 0x01, 1], to: port)
            #expect(peer.receive()?.bytes == [1])

            server.shared.updateLimits(TurnLimits())  // the default policy: loopback refused again
            let deadline = ContinuousClock.now + .seconds(3)
            while await server.allocations().first?.channels != 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))  // the engines pick up new limits within a second
            }
            let now = try #require(await server.allocations().first)
            #expect(now.channels == 0 && now.permissions == 0)
            c.socket.send([0x40, 0x01, 0x00, 0x01, 2], to: port)
            #expect(peer.receive() == nil, "ChannelData no longer reaches the refused peer")
        }
    }

    // MARK: Caps

    @Test func channelBindingsPastTheAllocationsCapAreRefusedWith508() async throws {
        try await withTurnServer(configure: {
            $0.allowLoopbackPeers()
            $0.limits.maxChannelsPerAllocation = 3
        }) { server, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.allocate()?.messageClass == .successResponse)
            let peer = IPAddress("127.0.0.1")!
            for i: UInt16 in 0..<3 {
                #expect(c.channelBind(0x4000 + i, TransportAddress(ip: peer, port: 9000 + i))?.messageClass == .successResponse)
            }
            #expect(c.channelBind(0x4003, TransportAddress(ip: peer, port: 9003))?.errorCode?.code == 508)
            #expect(c.channelBind(0x4000, TransportAddress(ip: peer, port: 9000))?.messageClass == .successResponse,
                    "refreshing a binding it holds is not a new one")
            #expect(await server.allocations().first?.channels == 3)
        }
    }

    @Test func sessionCredentialsCountAgainstThePersonWhoLoggedIn() async throws {
        try await withTurnServer(configure: { $0.maxAllocationsPerUser = 2 }) { server, port in
            let sessions = server.shared.credentials.sessions
            let first = sessions.mint(session: "s1", owner: "alice", lifetime: 600)
            let second = sessions.mint(session: "s2", owner: "alice", lifetime: 600)
            let bobs = sessions.mint(session: "s3", owner: "bob", lifetime: 600)
            let clients = [
                TurnTestClient(serverPort: port),  // alice's static login
                TurnTestClient(serverPort: port, username: first.username, password: first.password),
                TurnTestClient(serverPort: port, username: second.username, password: second.password),
                TurnTestClient(serverPort: port, username: bobs.username, password: bobs.password),
            ]
            #expect(clients[0].allocate()?.messageClass == .successResponse)
            #expect(clients[1].allocate()?.messageClass == .successResponse)
            #expect(clients[2].allocate()?.errorCode?.code == 486, "alice's third allocation, whatever the name")
            #expect(clients[3].allocate()?.messageClass == .successResponse, "bob has his own quota")
        }
    }

    @Test func ephemeralCredentialsExpiringTooFarAheadAreRefused() async throws {
        try await withTurnServer(users: [:], secrets: ["north"]) { _, port in
            let forever = "99999999999:eve"
            let e = TurnTestClient(serverPort: port, username: forever, password: EphemeralPassword.of(forever, "north"))
            #expect(e.allocate()?.errorCode?.code == 401)
            let day = "\(Int(Date().timeIntervalSince1970) + 86_400):eve"
            let d = TurnTestClient(serverPort: port, username: day, password: EphemeralPassword.of(day, "north"))
            #expect(d.allocate()?.messageClass == .successResponse)
        }
    }

    @Test func passwordAlgorithmMD5WithParametersIs400() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.fetchChallenge())
            var m = TurnTestClient.allocateRequest()
            m.appendText(AttributeType.username, c.username)
            m.appendText(AttributeType.realm, c.realm)
            m.appendText(AttributeType.nonce, c.nonce)
            m.append(AttributeType.passwordAlgorithms, c.offeredAlgorithms)
            m.append(AttributeType.passwordAlgorithm, [0, 1, 0, 4, 1, 2, 3, 4])  // MD5 with four parameter bytes
            let r = try #require(c.exchange(m.encode(integrity: .sha1(key: c.key)), transactionID: m.transactionID))
            #expect(r.errorCode?.code == 400)
            // The offered list with parameters added to an entry is not the list offered either.
            var n = TurnTestClient.allocateRequest()
            n.appendText(AttributeType.username, c.username)
            n.appendText(AttributeType.realm, c.realm)
            n.appendText(AttributeType.nonce, c.nonce)
            n.append(AttributeType.passwordAlgorithms, [0, 1, 0, 4, 9, 9, 9, 9, 0, 2, 0, 0])
            n.append(AttributeType.passwordAlgorithm, [0, 1, 0, 0])
            #expect(c.exchange(n.encode(integrity: .sha1(key: c.key)), transactionID: n.transactionID)?.errorCode?.code == 400)
        }
    }

    // MARK: TCP

    @Test func aBindingFollowedByJunkOnTCPIsAnsweredBeforeTheConnectionCloses() async throws {
        try await withTurnServer { _, port in
            let tcp = try #require(TCPTestSocket(port: port))
            let m = StunMessage(method: .binding, messageClass: .request)
            tcp.send(m.encode() + [0xFF, 0xFF, 0xFF, 0xFF])
            let r = try StunMessage(decoding: try #require(tcp.receiveStun()))
            #expect(r.transactionID == m.transactionID)
            #expect(tcp.isClosedByPeer())
        }
    }

    @Test func tcpConnectionsPastTheSourcesCapAreClosedAtOnce() async throws {
        try await withTurnServer(configure: { $0.limits.maxStreamConnectionsPerSource = 2 }) { server, port in
            func answersBinding(_ tcp: TCPTestSocket) throws -> Bool {
                let m = StunMessage(method: .binding, messageClass: .request)
                tcp.send(m.encode())
                guard let bytes = tcp.receiveStun() else { return false }
                return try StunMessage(decoding: bytes).transactionID == m.transactionID
            }
            let a = try #require(TCPTestSocket(port: port))
            var b = try #require(TCPTestSocket(port: port))
            #expect(try answersBinding(a))
            #expect(try answersBinding(b))
            let third = try #require(TCPTestSocket(port: port))
            #expect(third.isClosedByPeer(), "a third connection from 127.0.0.1")
            #expect(server.stats.streamConnectionsRefused.value == 1)
            b = try #require(TCPTestSocket(port: port))  // the second one closes here, making room
            var answered = false
            let deadline = ContinuousClock.now + .seconds(2)
            while !answered, ContinuousClock.now < deadline {
                // The server sees the old connection close asynchronously: a new one may still be refused.
                answered = (try? answersBinding(b)) == true
                if !answered { b = try #require(TCPTestSocket(port: port)) }
            }
            #expect(answered)
        }
    }
}
