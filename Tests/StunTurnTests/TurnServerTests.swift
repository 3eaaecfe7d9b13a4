import TurnTestSupport
import NIOCore
import Testing
@testable import StunTurn

/// The server over real UDP sockets on loopback, driven by a small test client.
@Suite(.serialized) struct TurnServerTests {
    @Test func bindingRequestIsAnsweredWithTheSourceAddressAndFingerprint() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            let m = StunMessage(method: .binding, messageClass: .request)
            let r = try #require(c.exchange(m.encode(fingerprint: true), transactionID: m.transactionID))
            #expect(r.messageClass == .successResponse)
            #expect(r.xorAddress(AttributeType.xorMappedAddress) == c.socket.address)
            #expect(r.attributes.last?.type == AttributeType.fingerprint)
        }
    }

    @Test func allocateWithoutCredentialsIsChallengedWithRealmNonceAndPasswordAlgorithms() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            let m = TurnTestClient.allocateRequest()
            let r = try #require(c.exchange(m.encode(), transactionID: m.transactionID))
            #expect(r.errorCode?.code == 401)
            #expect(r.realm == "test.realm")
            #expect(r.nonce?.hasPrefix("obMatJos2") == true)
            #expect(r.passwordAlgorithms == [1, 2])
            #expect(!r.has(AttributeType.messageIntegrity))
        }
    }

    @Test func allocateSucceedsWithRelayedMappedAddressAndDefaultLifetime() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            let r = try #require(c.allocate())
            #expect(r.messageClass == .successResponse)
            let relayed = try #require(r.xorAddress(AttributeType.xorRelayedAddress))
            #expect(relayed.ip == IPAddress("127.0.0.1"))
            #expect((22000...24999).contains(relayed.port))
            #expect(r.xorAddress(AttributeType.xorMappedAddress) == c.socket.address)
            #expect(r.lifetime == 600)
            #expect(MessageIntegrity.verify(r, key: c.key))
        }
    }

    @Test func lifetimeIsCappedByTheConfiguredMaximum() async throws {
        try await withTurnServer(configure: { $0.maxLifetime = 1200 }) { _, port in
            let c = TurnTestClient(serverPort: port)
            var m = TurnTestClient.allocateRequest()
            m.appendLifetime(99999)
            #expect(c.request(m)?.lifetime == 1200)
            #expect(c.refresh(lifetime: 30)?.lifetime == 600)
        }
    }

    @Test func sha256PasswordAlgorithmAndIntegrityAreAccepted() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.fetchChallenge())
            c.algorithm = .sha256
            c.useSHA256Integrity = true
            let m = TurnTestClient.allocateRequest()
            let r = try #require(c.exchange(c.signed(m), transactionID: m.transactionID))
            #expect(r.messageClass == .successResponse)
            #expect(r.has(AttributeType.messageIntegritySHA256))
            #expect(MessageIntegrity.verify(r, key: PasswordAlgorithm.sha256.key(username: "alice", realm: "test.realm", password: "wonder")))
        }
    }

    @Test func passwordAlgorithmsDifferentFromTheOfferedListIs400() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.fetchChallenge())
            c.algorithm = .sha256
            c.offeredAlgorithms = StunMessage.encodePasswordAlgorithms([.sha256])  // a downgrade-tampered list
            let m = TurnTestClient.allocateRequest()
            #expect(c.exchange(c.signed(m), transactionID: m.transactionID)?.errorCode?.code == 400)
        }
    }

    @Test func userhashIdentifiesAStaticUser() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.fetchChallenge())
            var m = TurnTestClient.allocateRequest()
            m.append(AttributeType.userhash, userHash(username: "alice", realm: "test.realm"))
            m.appendText(AttributeType.realm, c.realm)
            m.appendText(AttributeType.nonce, c.nonce)
            let r = try #require(c.exchange(m.encode(integrity: .sha1(key: c.key)), transactionID: m.transactionID))
            #expect(r.messageClass == .successResponse)
        }
    }

    @Test func wrongPasswordIs401AndForgedNonceIs438WithAFreshNonce() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port, password: "not-it")
            #expect(c.allocate()?.errorCode?.code == 401)
            let good = TurnTestClient(serverPort: port)
            _ = good.allocate()
            good.nonce = "obMatJos2wAAA0000000000000000aaaaaaaaaaaaaaaaaaaaaaaa"
            let m = TurnTestClient.allocateRequest()
            let r = try #require(good.exchange(good.signed(m), transactionID: m.transactionID))
            #expect(r.errorCode?.code == 438)
            #expect(r.nonce != nil && r.nonce != good.nonce)
            #expect(r.realm == "test.realm")
        }
    }

    @Test func ephemeralSharedSecretCredentialAllocates() async throws {
        try await withTurnServer(users: [:], secrets: ["north"]) { _, port in
            let name = "\(Int(Date().timeIntervalSince1970) + 600):carol"
            let c = TurnTestClient(serverPort: port, username: name, password: EphemeralPassword.of(name, "north"))
            #expect(c.allocate()?.messageClass == .successResponse)
            let expiredName = "\(Int(Date().timeIntervalSince1970) - 1):carol"
            let e = TurnTestClient(serverPort: port, username: expiredName, password: EphemeralPassword.of(expiredName, "north"))
            #expect(e.allocate()?.errorCode?.code == 401)
        }
    }

    @Test func retransmittedAllocateGetsTheSameAnswerAndANewOneIs437() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.fetchChallenge())
            let m = TurnTestClient.allocateRequest()
            let bytes = c.signed(m)
            let first = try #require(c.exchange(bytes, transactionID: m.transactionID))
            let again = try #require(c.exchange(bytes, transactionID: m.transactionID))
            #expect(first.messageClass == .successResponse)
            #expect(again.raw == first.raw)
            #expect(c.allocate()?.errorCode?.code == 437)
        }
    }

    @Test func refreshWithLifetimeZeroDeletesTheAllocation() async throws {
        try await withTurnServer { server, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            #expect(server.stats.allocationsActive.value == 1)
            let r = try #require(c.refresh(lifetime: 0))
            #expect(r.messageClass == .successResponse && r.lifetime == 0)
            #expect(server.stats.allocationsActive.value == 0)
            #expect(c.refresh(lifetime: 600)?.errorCode?.code == 437)
            #expect(c.createPermission(TransportAddress(ip: IPAddress("8.8.8.8")!, port: 1))?.errorCode?.code == 437)
        }
    }

    /// The relay socket's handler holds its allocation strongly (see RelaySocketHandler): deleting the
    /// allocation must still free it once its relay socket is closed.
    @Test func aDeletedAllocationIsFreed() async throws {
        final class WeakReference: @unchecked Sendable { weak var object: AnyObject? }
        try await withTurnServer { server, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            let engine = try #require(server.engines.first)
            let allocation = WeakReference()
            try await engine.eventLoop.submit { allocation.object = engine.value.core.manager.allocations.values.first }.get()
            #expect(try await engine.eventLoop.submit { allocation.object != nil }.get())
            #expect(c.refresh(lifetime: 0)?.lifetime == 0)
            // The relay socket closes on the loop (a tick or two): the allocation goes with it.
            var rounds = 0
            while try await engine.eventLoop.submit({ allocation.object != nil }).get(), rounds < 100 { rounds += 1 }
            #expect(try await engine.eventLoop.submit { allocation.object == nil }.get())
        }
    }

    @Test func anotherUserOnTheSameFiveTupleIs441() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            c.username = "bob"
            c.password = "builder"
            #expect(c.refresh(lifetime: 600)?.errorCode?.code == 441)
        }
    }

    @Test func createPermissionToLoopbackIsForbiddenByDefault() async throws {
        try await withTurnServer { server, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            for peer in ["127.0.0.1", "10.1.2.3", "192.168.0.10", "169.254.169.254"] {
                #expect(c.createPermission(TransportAddress(ip: IPAddress(peer)!, port: 9))?.errorCode?.code == 403, "\(peer)")
            }
            #expect(c.createPermission(TransportAddress(ip: IPAddress("::ffff:127.0.0.1")!, port: 9))?.errorCode?.code == 403)
            #expect(c.channelBind(0x4000, TransportAddress(ip: IPAddress("127.0.0.1")!, port: 9))?.errorCode?.code == 403)
            #expect(c.createPermission(TransportAddress(ip: IPAddress("8.8.8.8")!, port: 9))?.messageClass == .successResponse)
            #expect(server.stats.peerPolicyRejections.value == 6)
        }
    }

    @Test func ipv6PeerOnAnIPv4RelayIs443() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            #expect(c.createPermission(TransportAddress(ip: IPAddress("2606:4700::1111")!, port: 9))?.errorCode?.code == 443)
        }
    }

    @Test func ipv6RelayWhenAskedForWithREQUESTEDADDRESSFAMILY() async throws {
        try await withTurnServer(configure: {
            $0.externalAddress6 = IPAddress("::1")
            $0.peerPolicy = PeerAddressPolicy(allow: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!])
        }) { _, port in
            let c = TurnTestClient(serverPort: port)
            var v6 = TurnTestClient.allocateRequest()
            v6.append(AttributeType.requestedAddressFamily, [2, 0, 0, 0])
            let r = try #require(c.request(v6))
            #expect(r.messageClass == .successResponse)
            #expect(r.xorAddress(AttributeType.xorRelayedAddress)?.ip == IPAddress("::1"))
            #expect(r.xorAddress(AttributeType.xorMappedAddress)?.ip == IPAddress("127.0.0.1"))
            // The relay's family decides the peers' (RFC 6156 §4.3 / RFC 8656 443).
            #expect(c.createPermission(TransportAddress(ip: IPAddress("127.0.0.1")!, port: 9))?.errorCode?.code == 443)
            #expect(c.createPermission(TransportAddress(ip: IPAddress("::1")!, port: 9))?.messageClass == .successResponse)
        }
    }

    @Test func additionalAddressFamilyMakesADualAllocation() async throws {
        try await withTurnServer(configure: {
            $0.externalAddress6 = IPAddress("::1")
            $0.peerPolicy = PeerAddressPolicy(allow: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!])
        }) { server, port in
            let c = TurnTestClient(serverPort: port)
            var both = TurnTestClient.allocateRequest()
            both.append(AttributeType.requestedAddressFamily, [1, 0, 0, 0])
            both.append(AttributeType.additionalAddressFamily, [2, 0, 0, 0])
            #expect(c.request(both)?.errorCode?.code == 400)
            var v4Additional = TurnTestClient.allocateRequest()
            v4Additional.append(AttributeType.additionalAddressFamily, [1, 0, 0, 0])
            #expect(c.request(v4Additional)?.errorCode?.code == 400)

            var dual = TurnTestClient.allocateRequest()
            dual.append(AttributeType.additionalAddressFamily, [2, 0, 0, 0])
            let r = try #require(c.request(dual))
            #expect(r.messageClass == .successResponse)
            let relayed = r.attributes.filter { $0.type == AttributeType.xorRelayedAddress }
                .compactMap { AddressAttribute.decodeXor($0.value, transactionID: r.transactionID) }
            #expect(relayed.map(\.ip.isIPv6) == [false, true])
            #expect(relayed.last?.ip == IPAddress("::1"))
            #expect(!r.has(AttributeType.addressErrorCode))
            // Peers of both families, and relaying to the IPv4 one through the IPv4 relay.
            let peer = UDPTestSocket()
            #expect(c.createPermission(peer.address)?.messageClass == .successResponse)
            #expect(c.createPermission(TransportAddress(ip: IPAddress("::1")!, port: 9))?.messageClass == .successResponse)
            c.sendIndication(Array("dual".utf8), to: peer.address)
            let got = try #require(peer.receive())
            #expect(got.bytes == Array("dual".utf8))
            #expect(got.fromPort == relayed[0].port)
            // Deleting the allocation releases both relay ports.
            #expect(c.refresh(lifetime: 0)?.messageClass == .successResponse)
            #expect(server.stats.allocationsActive.value == 0)
        }
    }

    @Test func additionalAddressFamilyWithoutIPv6GetsTheIPv4RelayAndAddressErrorCode440() async throws {
        try await withTurnServer(configure: { $0.ipv6Relays = false }) { _, port in
            let c = TurnTestClient(serverPort: port)
            var dual = TurnTestClient.allocateRequest()
            dual.append(AttributeType.additionalAddressFamily, [2, 0, 0, 0])
            let r = try #require(c.request(dual))
            #expect(r.messageClass == .successResponse)
            #expect(r.xorAddress(AttributeType.xorRelayedAddress)?.ip.isIPv6 == false)
            let addressError = try #require(r.attribute(AttributeType.addressErrorCode)?.value)
            #expect(Array(addressError.prefix(4)) == [2, 0, 4, 40])
        }
    }

    /// Another socket holds the even (offset 0) or the odd (offset 1) port of the pair 27000/27001: the
    /// reservation moves on to 27002/27003, and the first pair is given back.
    @Test(arguments: [0, 1] as [UInt16])
    func evenPortReservationMovesOnWhenAnotherSocketHoldsAPortOfThePair(offset: UInt16) async throws {
        let squatter = UDPTestSocket(ip: "0.0.0.0", port: 27000 + offset)
        #expect(squatter.port == 27000 + offset)
        try await withTurnServer(configure: { $0.relayPorts = 27000...27003 }) { server, port in
            let c = TurnTestClient(serverPort: port)
            var m = TurnTestClient.allocateRequest()
            m.append(AttributeType.evenPort, [0x80])
            let r = try #require(c.request(m))
            #expect(r.errorCode == nil)
            #expect(r.xorAddress(AttributeType.xorRelayedAddress)?.port == 27002)
            #expect(r.reservationToken != nil)
            #expect(server.shared.portPool.inUseCount == 2)  // 27002 and the reserved 27003
        }
        withExtendedLifetime(squatter) {}
    }

    @Test func badAllocateRequestsGetTheirErrorCodes() async throws {
        try await withTurnServer(configure: { $0.ipv6Relays = false }) { _, port in
            let c = TurnTestClient(serverPort: port)
            #expect(c.request(TurnTestClient.allocateRequest(transport: 99))?.errorCode?.code == 442)
            #expect(c.request(StunMessage(method: .allocate, messageClass: .request))?.errorCode?.code == 400)
            var v6 = TurnTestClient.allocateRequest()
            v6.append(AttributeType.requestedAddressFamily, [2, 0, 0, 0])
            #expect(c.request(v6)?.errorCode?.code == 440)
            var both = TurnTestClient.allocateRequest()
            both.append(AttributeType.evenPort, [0])
            both.appendReservationToken(1)
            #expect(c.request(both)?.errorCode?.code == 400)
            var badToken = TurnTestClient.allocateRequest()
            badToken.appendReservationToken(42)
            #expect(c.request(badToken)?.errorCode?.code == 508)
            var unknown = TurnTestClient.allocateRequest()
            unknown.append(0x0031, [1, 2, 3, 4])
            let r = try #require(c.request(unknown))
            #expect(r.errorCode?.code == 420)
            #expect(r.unknownAttributesList == [0x0031])
        }
    }

    @Test func unknownRequestMethodIs400() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            let m = StunMessage(method: StunMethod(rawValue: 0x0FF), messageClass: .request)
            #expect(c.exchange(m.encode(), transactionID: m.transactionID)?.errorCode?.code == 400)
        }
    }

    @Test func evenPortWithReservationGivesATokenForTheNextPort() async throws {
        try await withTurnServer { _, port in
            let c = TurnTestClient(serverPort: port)
            var m = TurnTestClient.allocateRequest()
            m.append(AttributeType.evenPort, [0x80])
            let r = try #require(c.request(m))
            let relayed = try #require(r.xorAddress(AttributeType.xorRelayedAddress))
            #expect(relayed.port % 2 == 0)
            let token = try #require(r.reservationToken)
            let second = TurnTestClient(serverPort: port)
            var m2 = TurnTestClient.allocateRequest()
            m2.appendReservationToken(token)
            #expect(second.request(m2)?.xorAddress(AttributeType.xorRelayedAddress)?.port == relayed.port + 1)
        }
    }

    @Test func theReservedPortIsHeldBySocketUntilItsTokenMakesARelayOfIt() async throws {
        try await withTurnServer(configure: { $0.allowLoopbackPeers(); $0.relayPorts = 27100...27103 }) { server, port in
            let c = TurnTestClient(serverPort: port)
            var m = TurnTestClient.allocateRequest()
            m.append(AttributeType.evenPort, [0x80])
            let r = try #require(c.request(m))
            let relayed = try #require(r.xorAddress(AttributeType.xorRelayedAddress))
            let token = try #require(r.reservationToken)
            // Reserved means held: no other socket on the host can bind the odd port now.
            let squatter = UDPTestSocket(ip: "127.0.0.1", port: relayed.port + 1)
            #expect(squatter.port != relayed.port + 1)
            // The token turns the held socket into the second allocation's relay, which relays.
            let second = TurnTestClient(serverPort: port)
            var m2 = TurnTestClient.allocateRequest()
            m2.appendReservationToken(token)
            let r2 = try #require(second.request(m2))
            #expect(r2.xorAddress(AttributeType.xorRelayedAddress)?.port == relayed.port + 1)
            #expect(server.shared.portPool.reservationCount == 0)
            let peer = UDPTestSocket()
            #expect(second.createPermission(peer.address)?.messageClass == .successResponse)
            second.sendIndication([1, 2, 3], to: peer.address)
            let atPeer = try #require(peer.receive())
            #expect(atPeer.bytes == [1, 2, 3] && atPeer.fromPort == relayed.port + 1)
            peer.send([4, 5], to: relayed.port + 1)
            let back = try StunMessage(decoding: try #require(second.socket.receive()).bytes)
            #expect(back.method == .data && back.data == [4, 5])
        }
    }

    @Test func quotasPerUserAndInTotal() async throws {
        try await withTurnServer(configure: { $0.maxAllocationsPerUser = 1; $0.maxAllocations = 2 }) { _, port in
            #expect(TurnTestClient(serverPort: port).allocate()?.messageClass == .successResponse)
            #expect(TurnTestClient(serverPort: port).allocate()?.errorCode?.code == 486)
            #expect(TurnTestClient(serverPort: port, username: "bob", password: "builder").allocate()?.messageClass == .successResponse)
            #expect(TurnTestClient(serverPort: port, username: "carl", password: "x").allocate()?.errorCode?.code == 401)
        }
        try await withTurnServer(configure: { $0.maxAllocations = 1 }) { _, port in
            #expect(TurnTestClient(serverPort: port).allocate()?.messageClass == .successResponse)
            #expect(TurnTestClient(serverPort: port, username: "bob", password: "builder").allocate()?.errorCode?.code == 508)
        }
    }

    @Test func exhaustedRelayPortRangeIs508AndAFreedPortIsReused() async throws {
        try await withTurnServer(configure: { $0.relayPorts = 27523...27523 }) { _, port in
            let a = TurnTestClient(serverPort: port)
            #expect(a.allocate()?.xorAddress(AttributeType.xorRelayedAddress)?.port == 27523)
            let b = TurnTestClient(serverPort: port)
            #expect(b.allocate()?.errorCode?.code == 508)
            _ = a.refresh(lifetime: 0)
            #expect(b.allocate()?.xorAddress(AttributeType.xorRelayedAddress)?.port == 27523)
        }
    }

    @Test func permissionQuotaIs508() async throws {
        try await withTurnServer(configure: { $0.maxPermissionsPerAllocation = 2 }) { _, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            for i in 1...2 {
                #expect(c.createPermission(TransportAddress(ip: IPAddress("8.8.8.\(i)")!, port: 1))?.messageClass == .successResponse)
            }
            #expect(c.createPermission(TransportAddress(ip: IPAddress("8.8.8.3")!, port: 1))?.errorCode?.code == 508)
            #expect(c.createPermission(TransportAddress(ip: IPAddress("8.8.8.1")!, port: 1))?.messageClass == .successResponse)
        }
    }

    @Test func channelBindRulesAreEnforced() async throws {
        try await withTurnServer(configure: { $0.channelNumbers = ChannelData.channelRange }) { _, port in
            let c = TurnTestClient(serverPort: port)
            _ = c.allocate()
            let a = TransportAddress(ip: IPAddress("8.8.8.8")!, port: 1)
            let b = TransportAddress(ip: IPAddress("8.8.4.4")!, port: 1)
            #expect(c.channelBind(0x3FFF, a)?.errorCode?.code == 400)
            #expect(c.channelBind(0x5000, a)?.errorCode?.code == 400)
            #expect(c.channelBind(0x4000, a)?.messageClass == .successResponse)
            #expect(c.channelBind(0x4000, a)?.messageClass == .successResponse)
            #expect(c.channelBind(0x4000, b)?.errorCode?.code == 400)
            #expect(c.channelBind(0x4001, a)?.errorCode?.code == 400)
        }
    }

    @Test func dataRelaysBothWaysOverChannelsAndIndications() async throws {
        try await withTurnServer(configure: { $0.allowLoopbackPeers() }) { server, port in
            let c = TurnTestClient(serverPort: port)
            let relayed = try #require(c.allocate()?.xorAddress(AttributeType.xorRelayedAddress))
            let peer = UDPTestSocket()
            let stranger = UDPTestSocket(ip: "127.0.0.2")
            // Send indication → peer.
            #expect(c.createPermission(peer.address)?.messageClass == .successResponse)
            c.sendIndication([1, 2, 3], to: peer.address)
            let atPeer = try #require(peer.receive())
            #expect(atPeer.bytes == [1, 2, 3])
            #expect(atPeer.fromPort == relayed.port)
            // A host without a permission is dropped; the peer's data arrives as a Data indication
            // (no channel yet). Both reach the same relay socket, so they are handled in this order.
            stranger.send([0xAA], to: relayed.port)
            peer.send([4, 5], to: relayed.port)
            let indication = try StunMessage(decoding: try #require(c.socket.receive()).bytes)
            #expect(indication.method == .data && indication.messageClass == .indication)
            #expect(indication.data == [4, 5])
            #expect(indication.xorAddress(AttributeType.xorPeerAddress) == peer.address)
            // Bind a channel: ChannelData both ways.
            #expect(c.channelBind(0x4ABC, peer.address)?.messageClass == .successResponse)
            c.socket.send([0x4A, 0xBC, 0x00, 0x02, 7, 8], to: port)
            #expect(peer.receive()?.bytes == [7, 8])
            peer.send([9, 9, 9], to: relayed.port)
            #expect(c.socket.receive()?.bytes == [0x4A, 0xBC, 0x00, 0x03, 9, 9, 9])
            let stats = server.stats
            #expect(stats.toPeer.totalPackets == 2)
            #expect(stats.toClient.totalPackets == 2)
            #expect(stats.unroutableDropped.value == 1)
        }
    }

    /// A server that allows loopback peers, a client with an allocation (its relayed address), and a
    /// peer on 127.0.0.1 bound to the client's channel 0x4001.
    func withChannelToPeer(
        _ body: (TurnServer, UInt16, TurnTestClient, TransportAddress, UDPTestSocket) async throws -> Void
    ) async throws {
        try await withTurnServer(configure: { $0.allowLoopbackPeers() }) { server, port in
            let c = TurnTestClient(serverPort: port)
            let relayed = try #require(c.allocate()?.xorAddress(AttributeType.xorRelayedAddress))
            let peer = UDPTestSocket()
            try #require(c.channelBind(0x4001, peer.address)?.messageClass == .successResponse)
            try await body(server, port, c, relayed, peer)
        }
    }

    @Test func burstsOfEqualSizedPacketsArriveAsSeparateDatagramsInOrder() async throws {
        // Equal-sized runs to one destination are sent as one GSO write; the receiver must still see
        // every datagram on its own, unchanged and in order.
        try await withChannelToPeer { _, port, c, relayed, peer in
            for i in 0..<40 { c.socket.send([0x40, 0x01, 0x00, 0x05, UInt8(i), 1, 2, 3, 4], to: port) }
            for i in 0..<40 { #expect(peer.receive()?.bytes == [UInt8(i), 1, 2, 3, 4]) }
            for i in 0..<40 { peer.send([UInt8(i), 9, 9], to: relayed.port) }
            for i in 0..<40 { #expect(c.socket.receive()?.bytes == [0x40, 0x01, 0x00, 0x03, UInt8(i), 9, 9]) }
        }
    }

    @Test func datagramsLongerThanAReadSlotAreDroppedAndCountedOnBothSides() async throws {
        // UDP is read in slots of DatagramDrain.slot bytes: a longer datagram is dropped and counted,
        // never relayed cut short, whether NIO read it (first of a wake-up) or the drain did.
        try await withChannelToPeer { server, port, c, relayed, peer in
            let long = [UInt8](repeating: 7, count: DatagramDrain.slot + 100)
            let longChannelData = [0x40, 0x01, UInt8(long.count >> 8), UInt8(long.count & 0xFF)] + long
            for burst in [[longChannelData, [0x40, 0x01, 0x00, 0x01, 1]], [[0x40, 0x01, 0x00, 0x01, 2], longChannelData, [0x40, 0x01, 0x00, 0x01, 3]]] {
                for d in burst { c.socket.send(d, to: port) }
            }
            for i: UInt8 in 1...3 { #expect(peer.receive()?.bytes == [i]) }
            for burst in [[long, [4]], [[5], long, [6]]] {
                for d in burst { peer.send(d, to: relayed.port) }
            }
            for i: UInt8 in 4...6 { #expect(c.socket.receive()?.bytes == [0x40, 0x01, 0x00, 0x01, i]) }
            #expect(server.stats.malformedDropped.value == 4)
            #expect(server.stats.toPeer.totalPackets == 3)
            #expect(server.stats.toClient.totalPackets == 3)
        }
    }

    @Test func garbageNeverStopsTheServer() async throws {
        try await withTurnServer { server, port in
            let attacker = UDPTestSocket(timeoutMilliseconds: 200)
            var rng = SystemRandomNumberGenerator()
            let valid = TurnTestClient.allocateRequest().encode()
            var junk: [[UInt8]] = [
                [], [0], [0x40], [0x40, 0x00, 0xFF, 0xFF, 1], Array(valid.prefix(10)), Array(valid.prefix(21)),
                [UInt8](repeating: 0xFF, count: 1500), [UInt8](repeating: 0, count: 20),
            ]
            var lying = valid
            lying[3] = 0xF0
            junk.append(lying)
            var hugeAttr = valid
            hugeAttr += [0x00, 0x06, 0xFF, 0xF0] + [UInt8](repeating: 0x61, count: 60000)
            hugeAttr[2] = UInt8((hugeAttr.count - 20) >> 8)
            hugeAttr[3] = UInt8((hugeAttr.count - 20) & 0xFF)
            junk.append(hugeAttr)
            var bigBody = StunMessage(method: .allocate, messageClass: .request)
            bigBody.append(AttributeType.software, [UInt8](repeating: 0x62, count: 60000))
            junk.append(bigBody.encode())
            for _ in 0..<200 { junk.append((0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
            for _ in 0..<200 {
                var m = valid
                m[Int.random(in: 0..<m.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                junk.append(m)
            }
            for j in junk { attacker.send(j, to: port) }
            // Responses to garbage are STUN errors at most; drain whatever came back.
            while let (bytes, _) = attacker.receive() { #expect((try? StunMessage(decoding: bytes)) != nil) }
            #expect(server.stats.malformedDropped.value > 200)
            let c = TurnTestClient(serverPort: port)
            #expect(c.allocate()?.messageClass == .successResponse)
        }
    }
}

import Foundation
import Crypto

enum EphemeralPassword {
    static func of(_ username: String, _ secret: String) -> String {
        Data(HMAC<Insecure.SHA1>.authenticationCode(for: Array(username.utf8), using: SymmetricKey(data: Array(secret.utf8))))
            .base64EncodedString()
    }
}
