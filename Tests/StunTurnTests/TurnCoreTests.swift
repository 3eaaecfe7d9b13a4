import Auth
import NIOCore
import Testing
@testable import StunTurn

/// Every method and error path of RFC 8656, RFC 6062 and RFC 6156 against the TURN core in memory: no
/// socket, no event loop; what the core answers and relays is read from its sink (`CoreHarness`).
/// The socket tests (TurnServerTests, StreamTransportTests) and the interop tests cover the shell.
@Suite struct TurnCoreTests {
    typealias H = CoreHarness

    // MARK: Binding and dispatch

    @Test func bindingAnswersWithTheSourceAddressBothWays() throws {
        let h = CoreHarness()
        let r = try #require(h.send(H.request(.binding), signed: false))
        #expect(r.messageClass == .successResponse)
        #expect(r.xorAddress(AttributeType.xorMappedAddress) == H.clientAddress)
        #expect(r.mappedAddress == H.clientAddress)
    }

    @Test func anUnknownComprehensionRequiredAttributeIs420WithItsType() throws {
        let h = CoreHarness()
        let r = try #require(h.send(H.request(.binding) { $0.append(0x7777, [1, 2, 3, 4]) }, signed: false))
        #expect(r.code == 420)
        #expect(r.unknownAttributesList == [0x7777])
        // Past authentication too (RFC 8489 §6.3.1), with integrity.
        let signed = try #require(h.allocate { $0.append(0x7778, [0, 0, 0, 0]) })
        #expect(signed.code == 420 && signed.unknownAttributesList == [0x7778])
    }

    @Test func anUnknownMethodIs400AndResponsesAndUnknownIndicationsAreDropped() throws {
        let h = CoreHarness()
        let unknown = StunMessage(method: StunMethod(rawValue: 0x0FF), messageClass: .request)
        #expect(h.send(unknown, signed: false)?.code == 400)
        let before = h.stats.malformedDropped.value
        h.shell.receive(StunMessage(method: .binding, messageClass: .successResponse).encode(), from: H.clientAddress, on: h.listener)
        h.shell.receive(StunMessage(method: .refresh, messageClass: .indication).encode(), from: H.clientAddress, on: h.listener)
        h.shell.receive([0xC0, 0, 0, 0], from: H.clientAddress, on: h.listener)  // neither STUN nor ChannelData
        #expect(h.stats.malformedDropped.value == before + 3)
        #expect(h.datagrams(to: H.clientAddress).isEmpty)
    }

    @Test func requestsWithoutIntegrityPastTheRateAreDroppedAndCounted() {
        let h = CoreHarness { $0.limits.unauthenticatedRate = 1; $0.limits.unauthenticatedBurst = 2 }
        let answered = (0..<5).filter { _ in h.send(H.request(.binding), signed: false) != nil }.count
        #expect(answered == 2)
        #expect(h.stats.rateLimited.value == 3)
    }

    // MARK: Authentication

    @Test func anAllocateWithoutCredentialsIsChallengedWith401RealmAndNonce() throws {
        let h = CoreHarness()
        let r = try #require(h.send(H.allocateRequest(), signed: false))
        #expect(r.code == 401)
        #expect(r.realm == "test.realm")
        #expect(r.nonce?.hasPrefix(NonceManager.cookie) == true)
    }

    @Test func aWrongPasswordIs401AndAStaleNonceIs438() throws {
        let h = CoreHarness()
        h.password = "guess"
        #expect(h.allocate()?.code == 401)
        #expect(h.stats.authFailures.value == 1)
        h.password = "wonder"
        var m = H.allocateRequest()
        m.appendText(AttributeType.username, "alice")
        m.appendText(AttributeType.realm, "test.realm")
        m.appendText(AttributeType.nonce, h.core.authenticator.nonces.make(for: H.clientAddress.ip))
        h.clock.advance(seconds: 601)  // past turn.nonce_lifetime
        h.shell.receive(m.encode(integrity: .sha1(key: h.key)), from: H.clientAddress, on: h.listener)
        let r = try #require(h.answer(to: m.transactionID))
        #expect(r.code == 438)
        #expect(r.nonce != nil)
    }

    @Test func aThrottledFailureIsAnsweredLater() throws {
        var throttle = AuthThrottle.Settings()
        throttle.freeFailures = 1
        let h = CoreHarness(throttle: throttle)
        h.password = "guess"
        #expect(h.allocate()?.code == 401)  // the free one: at once
        let second = H.allocateRequest()
        h.shell.receive(h.signed(second), from: H.clientAddress, on: h.listener)
        #expect(h.answer(to: second.transactionID) == nil)
        #expect(h.shell.later.count == 1 && h.shell.later[0].2 > .zero)
        h.shell.sendLater()
        #expect(h.answer(to: second.transactionID)?.code == 401)
    }

    @Test func anotherUsersRequestOnAnAllocationIs441() {
        let h = CoreHarness()
        h.allocate()
        h.username = "bob"
        h.password = "builder"
        #expect(h.refresh(lifetime: 600)?.code == 441)
    }

    // MARK: Allocate (RFC 8656 §7.2)

    @Test func anAllocateGetsARelayedAddressLifetimeAndMappedAddress() throws {
        let h = CoreHarness()
        let r = try #require(h.allocate())
        #expect(r.messageClass == .successResponse)
        let relayed = try #require(H.relayedAddresses(r).first)
        #expect(relayed.ip == IPAddress("192.0.2.1")!)
        #expect(h.shared.configuration.relayPorts.contains(relayed.port))
        #expect(r.lifetime == 600)
        #expect(r.xorAddress(AttributeType.xorMappedAddress) == H.clientAddress)
        #expect(h.stats.allocationsActive.value == 1)
        #expect(h.shared.quota.total == 1)
    }

    @Test func aRetransmittedAllocateGetsTheSameAnswerAndAnotherIs437() throws {
        let h = CoreHarness()
        let m = H.allocateRequest()
        let bytes = h.signed(m)
        h.shell.receive(bytes, from: H.clientAddress, on: h.listener)
        let first = try #require(h.datagrams(to: H.clientAddress).first?.bytes)
        h.shell.receive(bytes, from: H.clientAddress, on: h.listener)
        #expect(h.datagrams(to: H.clientAddress).first?.bytes == first)
        #expect(h.allocate()?.code == 437)
        #expect(h.stats.allocationsActive.value == 1)
    }

    @Test func aRetransmissionWhileTheRelaySocketIsBoundIsDropped() throws {
        let h = CoreHarness()
        h.shell.deferBinds = true
        let m = H.allocateRequest()
        let bytes = h.signed(m)
        h.shell.receive(bytes, from: H.clientAddress, on: h.listener)
        h.shell.receive(bytes, from: H.clientAddress, on: h.listener)
        #expect(h.shell.pendingBinds.count == 1)
        #expect(h.datagrams(to: H.clientAddress).isEmpty)
        h.shell.completeBinds()
        #expect(h.datagrams(to: H.clientAddress).count == 1)
    }

    @Test func requestedTransportIsRequiredAndMustBeUDPOrTCPOverAStream() {
        let h = CoreHarness()
        #expect(h.send(H.request(.allocate))?.code == 400)
        #expect(h.send(H.allocateRequest(protocolNumber: 1))?.code == 442)
        #expect(h.send(H.allocateRequest(transport: .tcp))?.code == 400)  // TCP relaying over UDP
        #expect(h.stats.allocationsActive.value == 0 && h.shared.quota.total == 0)
    }

    @Test func evenPortWithAReservationTokenOrATokenWithAFamilyIs400AndAnUnknownTokenIs508() {
        let h = CoreHarness()
        #expect(h.allocate {
            $0.append(AttributeType.evenPort, [0x80, 0, 0, 0])
            $0.appendReservationToken(42)
        }?.code == 400)
        #expect(h.allocate {
            $0.appendReservationToken(42)
            $0.append(AttributeType.requestedAddressFamily, [AddressFamily.ipv4.rawValue, 0, 0, 0])
        }?.code == 400)
        #expect(h.allocate { $0.appendReservationToken(42) }?.code == 508)
        #expect(h.shared.quota.total == 0 && h.shared.portPool.inUseCount == 0)
    }

    @Test func evenPortReservesTheNextPortForItsToken() throws {
        let h = CoreHarness()
        let r = try #require(h.allocate { $0.append(AttributeType.evenPort, [0x80, 0, 0, 0]) })
        let port = try #require(H.relayedAddresses(r).first?.port)
        #expect(port % 2 == 0)
        let token = try #require(r.reservationToken)
        #expect(h.shared.portPool.reservationCount == 1)
        // Another client redeems the token: it gets the reserved port.
        let other = TransportAddress(ip: H.clientAddress.ip, port: 40_001)
        let second = try #require(h.send(H.allocateRequest { $0.appendReservationToken(token) }, from: other))
        #expect(H.relayedAddresses(second).first?.port == port + 1)
        #expect(h.shared.portPool.reservationCount == 0)
    }

    @Test func aReservationThatCannotBeHeldIsGivenBackAndAnotherPairTried() throws {
        let h = CoreHarness()
        h.shell.reservationsRefused = true
        #expect(h.allocate { $0.append(AttributeType.evenPort, [0x80, 0, 0, 0]) }?.code == 508)  // four pairs, all refused
        #expect(h.shared.portPool.inUseCount == 0 && h.shared.portPool.reservationCount == 0 && h.shared.quota.total == 0)
        h.shell.reservationsRefused = false
        #expect(h.allocate { $0.append(AttributeType.evenPort, [0x80, 0, 0, 0]) }?.reservationToken != nil)
    }

    @Test func aPortTakenOnTheHostIsSkippedAndWhenNoneIsLeftTheAnswerIs508() throws {
        let h = CoreHarness { $0.relayPorts = 50000...50002 }
        h.shell.refusedPorts = [50000, 50001]
        let r = try #require(h.allocate())
        #expect(H.relayedAddresses(r).first?.port == 50002)
        let other = TransportAddress(ip: H.clientAddress.ip, port: 40_001)
        #expect(h.send(H.allocateRequest(), from: other)?.code == 508)
        #expect(h.shared.portPool.inUseCount == 1 && h.shared.quota.total == 1)
    }

    @Test func quotasAre486PerUserAnd508InTotalAndComeBackWithTheAllocation() throws {
        let h = CoreHarness { $0.maxAllocationsPerUser = 1; $0.maxAllocations = 2 }
        h.allocate()
        let second = TransportAddress(ip: H.clientAddress.ip, port: 40_001)
        #expect(h.send(H.allocateRequest(), from: second)?.code == 486)
        h.username = "bob"
        h.password = "builder"
        #expect(h.send(H.allocateRequest(), from: second)?.messageClass == .successResponse)
        let third = TransportAddress(ip: H.clientAddress.ip, port: 40_002)
        #expect(h.send(H.allocateRequest(), from: third)?.code == 508)
        #expect(h.stats.quotaRejections.value == 2)
        h.username = "alice"
        h.password = "wonder"
        #expect(h.refresh(lifetime: 0)?.lifetime == 0)
        #expect(h.send(H.allocateRequest(), from: third)?.messageClass == .successResponse)
    }

    @Test func aServerShuttingDownMakesNoNewAllocations() throws {
        let h = CoreHarness()
        h.shared.draining.set()
        let r = try #require(h.allocate())
        #expect(r.code == 508 && r.errorCode?.reason == "Server Shutting Down")
    }

    // MARK: Address families (RFC 6156, RFC 8656 §7.2)

    @Test func anIPv6RelayWithoutAnIPv6AddressOrAnUnknownFamilyIs440() {
        let h = CoreHarness()
        #expect(h.allocate { $0.append(AttributeType.requestedAddressFamily, [AddressFamily.ipv6.rawValue, 0, 0, 0]) }?.code == 440)
        #expect(h.allocate { $0.append(AttributeType.requestedAddressFamily, [0x07, 0, 0, 0]) }?.code == 440)
    }

    @Test func anIPv6AllocationRelaysToIPv6PeersOnly() throws {
        let h = CoreHarness(relayedIP6: IPAddress("2001:db8::1")!)
        let r = try #require(h.allocate { $0.append(AttributeType.requestedAddressFamily, [AddressFamily.ipv6.rawValue, 0, 0, 0]) })
        #expect(H.relayedAddresses(r).first?.ip == IPAddress("2001:db8::1")!)
        #expect(h.createPermission([H.peer])?.code == 443)
        #expect(h.createPermission([H.peer6])?.messageClass == .successResponse)
        // Refresh must name the allocation's family.
        #expect(h.refresh(lifetime: 600) { $0.append(AttributeType.requestedAddressFamily, [AddressFamily.ipv4.rawValue, 0, 0, 0]) }?.code == 443)
    }

    @Test func additionalAddressFamilyMustBeIPv6AloneAndIsRefusedWith440WhereThereIsNone() throws {
        let h = CoreHarness()
        #expect(h.allocate {
            $0.append(AttributeType.additionalAddressFamily, [AddressFamily.ipv6.rawValue, 0, 0, 0])
            $0.append(AttributeType.requestedAddressFamily, [AddressFamily.ipv4.rawValue, 0, 0, 0])
        }?.code == 400)
        #expect(h.allocate { $0.append(AttributeType.additionalAddressFamily, [AddressFamily.ipv4.rawValue, 0, 0, 0]) }?.code == 400)
        let r = try #require(h.allocate { $0.append(AttributeType.additionalAddressFamily, [AddressFamily.ipv6.rawValue, 0, 0, 0]) })
        #expect(r.messageClass == .successResponse)
        #expect(H.relayedAddresses(r).count == 1)
        #expect(H.addressError(r)?.code == 440)
    }

    @Test func aDualAllocationRelaysEachFamilyFromItsOwnSocket() throws {
        let h = CoreHarness(relayedIP6: IPAddress("2001:db8::1")!)
        let r = try #require(h.allocate { $0.append(AttributeType.additionalAddressFamily, [AddressFamily.ipv6.rawValue, 0, 0, 0]) })
        let relayed = H.relayedAddresses(r)
        #expect(relayed.count == 2 && relayed[0].ip == IPAddress("192.0.2.1")! && relayed[1].ip == IPAddress("2001:db8::1")!)
        #expect(h.createPermission([H.peer, H.peer6])?.messageClass == .successResponse)
        for peer in [H.peer, H.peer6] {
            h.send(H.request(.send) {
                $0.messageClass = .indication
                $0.appendXorAddress(AttributeType.xorPeerAddress, peer)
                $0.append(AttributeType.data, [7, 7])
            }, signed: false)
            let out = try #require(h.datagrams(to: peer).first)
            #expect(out.bytes == [7, 7])
            #expect(out.from.localAddress.ip.isIPv6 == peer.ip.isIPv6)
        }
    }

    @Test func aDualAllocationWhoseIPv6HalfCannotBeBoundStandsWithAddressError508() throws {
        let h = CoreHarness(relayedIP6: IPAddress("2001:db8::1")!) { $0.relayPorts = 50000...50001 }
        let r1 = try #require(h.allocate())
        let used = try #require(H.relayedAddresses(r1).first?.port)
        h.shell.refusedPorts = [used == 50000 ? 50001 : 50000]
        let other = TransportAddress(ip: H.clientAddress.ip, port: 40_001)
        #expect(h.refresh(lifetime: 0)?.lifetime == 0)  // frees the first port for the IPv4 half
        let r = try #require(h.send(H.allocateRequest {
            $0.append(AttributeType.additionalAddressFamily, [AddressFamily.ipv6.rawValue, 0, 0, 0])
        }, from: other))
        #expect(r.messageClass == .successResponse)
        #expect(H.relayedAddresses(r).count == 1)
        #expect(H.addressError(r)?.code == 508)
        #expect(h.shared.portPool.inUseCount == 1)
    }

    // MARK: Refresh (§7.3)

    @Test func refreshWithoutAnAllocationIs437() {
        let h = CoreHarness()
        #expect(h.refresh(lifetime: 600)?.code == 437)
    }

    @Test func refreshCapsTheLifetimeAndLifetimeZeroEndsTheAllocation() throws {
        let h = CoreHarness()
        h.allocate()
        #expect(h.refresh(lifetime: 100_000)?.lifetime == 3600)
        #expect(h.refresh(lifetime: 1)?.lifetime == 600)
        let relay = try #require(h.allocation?.relaySocket)
        #expect(h.refresh(lifetime: 0)?.lifetime == 0)
        #expect(h.allocation == nil)
        #expect(!relay.isOpen && h.shell.closedSockets.contains { $0 === relay })
        #expect(h.stats.allocationsActive.value == 0 && h.shared.quota.total == 0 && h.shared.portPool.inUseCount == 0)
    }

    @Test func anAllocationExpiresWhenItsLifetimeRunsOut() throws {
        let h = CoreHarness()
        h.allocate()
        h.clock.advance(seconds: 599)
        h.shell.perform(h.core.sweep())
        #expect(h.allocation != nil)
        h.clock.advance(seconds: 2)
        h.shell.perform(h.core.sweep())
        #expect(h.allocation == nil)
        #expect(h.shell.closedSockets.count == 1 && h.shared.quota.total == 0)
    }

    // MARK: Permissions and Send/Data (§9-11)

    @Test func createPermissionNeedsAPeerAnAllocationAPermittedAddressAndRoom() {
        let h = CoreHarness { $0.maxPermissionsPerAllocation = 1 }
        #expect(h.createPermission([H.peer])?.code == 437)
        h.allocate()
        #expect(h.createPermission([])?.code == 400)
        #expect(h.createPermission([TransportAddress(ip: IPAddress("10.0.0.1")!, port: 1)])?.code == 403)
        #expect(h.createPermission([H.peer6])?.code == 443)
        #expect(h.createPermission([H.peer])?.messageClass == .successResponse)
        #expect(h.createPermission([TransportAddress(ip: IPAddress("203.0.113.10")!, port: 1)])?.code == 508)
        #expect(h.createPermission([H.peer])?.messageClass == .successResponse, "a refresh is no new permission")
        #expect(h.stats.peerPolicyRejections.value == 1)
    }

    @Test func sendGoesToAPermittedPeerAndItsDataComesBackAsADataIndication() throws {
        let h = CoreHarness()
        h.allocate()
        let send = StunMessage(method: .send, messageClass: .indication)
        var toPeer = send
        toPeer.appendXorAddress(AttributeType.xorPeerAddress, H.peer)
        toPeer.append(AttributeType.data, [1, 2, 3])
        h.shell.receive(toPeer.encode(), from: H.clientAddress, on: h.listener)
        #expect(h.datagrams(to: H.peer).isEmpty, "no permission yet")
        #expect(h.stats.unroutableDropped.value == 1)
        #expect(h.createPermission([H.peer])?.messageClass == .successResponse)
        h.shell.receive(toPeer.encode(), from: H.clientAddress, on: h.listener)
        let relay = try #require(h.allocation?.relaySocket)
        let out = try #require(h.datagrams(to: H.peer).first)
        #expect(out.bytes == [1, 2, 3] && out.from === relay)
        h.shell.receiveFromPeer([9, 8], from: H.peer, on: relay)
        let back = try #require(h.datagrams(to: H.clientAddress).first)
        let indication = try StunMessage(decoding: ByteBuffer(bytes: back.bytes))
        #expect(indication.method == .data && indication.messageClass == .indication)
        #expect(indication.xorAddress(AttributeType.xorPeerAddress) == H.peer && indication.data == [9, 8])
        #expect(back.from === h.listener)
        // A peer without a permission is not heard.
        h.shell.receiveFromPeer([1], from: TransportAddress(ip: IPAddress("203.0.113.99")!, port: 1), on: relay)
        #expect(h.datagrams(to: H.clientAddress).isEmpty)
    }

    @Test func aPermissionExpiresAfterFiveMinutes() throws {
        let h = CoreHarness()
        h.allocate()
        #expect(h.createPermission([H.peer])?.messageClass == .successResponse)
        let relay = try #require(h.allocation?.relaySocket)
        h.clock.advance(seconds: 301)
        h.shell.perform(h.core.sweep())
        h.shell.receiveFromPeer([1], from: H.peer, on: relay)
        #expect(h.datagrams(to: H.clientAddress).isEmpty)
        #expect(h.allocation?.permissions.count == 0)
    }

    // MARK: Channels (§12)

    @Test func channelBindChecksTheNumberThePeerAndTheRebindingRules() {
        let h = CoreHarness { $0.channelNumbers = ChannelData.channelRange }
        #expect(h.channelBind(0x4000, H.peer)?.code == 437)
        h.allocate()
        #expect(h.channelBind(0x3FFF, H.peer)?.code == 400)
        #expect(h.channelBind(0x5000, H.peer)?.code == 400, "strict numbers: RFC 8656's range only")
        #expect(h.send(H.request(.channelBind) { $0.appendChannelNumber(0x4000) })?.code == 400)
        #expect(h.send(H.request(.channelBind) {
            $0.appendChannelNumber(0x4000)
            $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer)
            $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer)
        })?.code == 400)
        #expect(h.channelBind(0x4000, TransportAddress(ip: IPAddress("10.0.0.1")!, port: 1))?.code == 403)
        #expect(h.channelBind(0x4000, H.peer)?.messageClass == .successResponse)
        #expect(h.channelBind(0x4000, H.peer)?.messageClass == .successResponse, "a refresh")
        #expect(h.channelBind(0x4000, TransportAddress(ip: H.peer.ip, port: 5001))?.code == 400, "the number to another peer")
        #expect(h.channelBind(0x4001, H.peer)?.code == 400, "the peer to another number")
        #expect(h.allocation?.permissions.contains(H.peer.ip) == true, "a binding installs the permission")
    }

    @Test func channelBindingsPastTheCapAre508() {
        let h = CoreHarness { $0.limits.maxChannelsPerAllocation = 1 }
        h.allocate()
        #expect(h.channelBind(0x4000, H.peer)?.messageClass == .successResponse)
        #expect(h.channelBind(0x4001, TransportAddress(ip: H.peer.ip, port: 5001))?.code == 508)
    }

    @Test func channelDataGoesToTheBoundPeerAndComesBackAsChannelData() throws {
        let h = CoreHarness()
        h.allocate()
        #expect(h.channelBind(0x4001, H.peer)?.messageClass == .successResponse)
        h.shell.receive([0x40, 0x01, 0x00, 0x02, 5, 6], from: H.clientAddress, on: h.listener)
        #expect(h.datagrams(to: H.peer).map(\.bytes) == [[5, 6]])
        h.shell.receive([0x40, 0x02, 0x00, 0x01, 5], from: H.clientAddress, on: h.listener)  // not bound
        h.shell.receive([0x40, 0x01, 0x00, 0x09, 5], from: H.clientAddress, on: h.listener)  // shorter than it says
        #expect(h.datagrams(to: H.peer).isEmpty)
        #expect(h.stats.unroutableDropped.value == 1 && h.stats.malformedDropped.value == 1)
        let relay = try #require(h.allocation?.relaySocket)
        h.shell.receiveFromPeer([1, 2, 3], from: H.peer, on: relay)
        #expect(h.datagrams(to: H.clientAddress).map(\.bytes) == [[0x40, 0x01, 0x00, 0x03, 1, 2, 3]])
    }

    @Test func aChannelExpiresAfterTenMinutesAndItsNumberCoolsDown() throws {
        let h = CoreHarness()
        h.allocate()
        #expect(h.refresh(lifetime: 3600)?.lifetime == 3600)
        #expect(h.channelBind(0x4001, H.peer)?.messageClass == .successResponse)
        h.clock.advance(seconds: 300)
        #expect(h.createPermission([H.peer])?.messageClass == .successResponse)  // keeps the permission alive
        h.clock.advance(seconds: 301)
        h.shell.perform(h.core.sweep())
        h.shell.receive([0x40, 0x01, 0x00, 0x01, 5], from: H.clientAddress, on: h.listener)
        #expect(h.datagrams(to: H.peer).isEmpty)
        #expect(h.channelBind(0x4001, TransportAddress(ip: H.peer.ip, port: 5001))?.code == 400, "cooling down")
    }

    // MARK: TCP relaying (RFC 6062)

    /// A TCP allocation made over a stream link; its five-tuple.
    func tcpAllocation(_ h: CoreHarness, link: MemoryStreamLink) throws -> FiveTuple {
        let ft = FiveTuple(client: H.clientAddress, server: H.serverAddress, transport: .tcp)
        let m = H.allocateRequest(transport: .tcp)
        h.shell.receive(h.signed(m), from: ft, on: link)
        let r = try StunMessage(decoding: ByteBuffer(bytes: try #require(link.take().first)))
        #expect(r.messageClass == .successResponse)
        return ft
    }

    /// A Connect to `H.peer` on the TCP allocation `ft`, its peer connection opened; the answer is on `link`.
    func connectedPeer(_ h: CoreHarness, ft: FiveTuple, link: MemoryStreamLink) throws -> PeerTCPConnection {
        h.shell.receive(h.signed(H.request(.connect) { $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer) }), from: ft, on: link)
        let connection = try #require(h.shell.connects.last?.connection)
        h.shell.perform(h.core.peerConnected(connection))
        return connection
    }

    func signedOnStream(_ h: CoreHarness, _ m: StunMessage, ft: FiveTuple, link: MemoryStreamLink) throws -> StunMessage {
        h.shell.receive(h.signed(m), from: ft, on: link)
        return try StunMessage(decoding: ByteBuffer(bytes: try #require(link.take().first)))
    }

    @Test func connectOpensAPeerConnectionAndAnswersWithItsID() throws {
        let h = CoreHarness()
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        h.shell.receive(h.signed(H.request(.connect) { $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer) }), from: ft, on: link)
        #expect(link.take().isEmpty, "answered once the peer connection opens")
        let connect = try #require(h.shell.connects.first)
        #expect(connect.to == H.peer && connect.from === h.core.manager.allocations[ft]?.relaySocket)
        h.shell.perform(h.core.peerConnected(connect.connection))
        let r = try StunMessage(decoding: ByteBuffer(bytes: try #require(link.take().first)))
        #expect(r.messageClass == .successResponse && r.connectionID == connect.connection.id)
        // §5.2: a second connection to the same peer → 446.
        let again = try signedOnStream(h, H.request(.connect) { $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer) }, ft: ft, link: link)
        #expect(again.code == 446)
    }

    @Test func aConnectThatFailsIs447() throws {
        let h = CoreHarness()
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        h.shell.receive(h.signed(H.request(.connect) { $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer) }), from: ft, on: link)
        let connect = try #require(h.shell.connects.first)
        h.shell.perform(h.core.peerConnectFailed(connect.connection, error: MemoryShellError.portTaken(0)))
        let r = try StunMessage(decoding: ByteBuffer(bytes: try #require(link.take().first)))
        #expect(r.code == 447)
        #expect(h.core.manager.allocations[ft]?.peerConnections?.isEmpty == true)
    }

    @Test func connectNeedsATCPAllocationAndChannelsAndSendAreNotForOne() throws {
        let h = CoreHarness()
        h.allocate()
        #expect(h.send(H.request(.connect) { $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer) })?.code == 400)
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        let bind = try signedOnStream(h, H.request(.channelBind) {
            $0.appendChannelNumber(0x4000)
            $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer)
        }, ft: ft, link: link)
        #expect(bind.code == 400)
        let connect = try signedOnStream(h, H.request(.connect), ft: ft, link: link)
        #expect(connect.code == 400, "no XOR-PEER-ADDRESS")
    }

    @Test func connectionBindJoinsTheDataConnectionOfTheSameUserOnly() throws {
        let h = CoreHarness()
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        let connection = try connectedPeer(h, ft: ft, link: link)
        _ = link.take()
        // Over UDP → 400.
        #expect(h.send(H.request(.connectionBind) { $0.appendConnectionID(connection.id) })?.code == 400)
        let data = MemoryStreamLink()
        let dataTuple = FiveTuple(client: TransportAddress(ip: H.clientAddress.ip, port: 40_100), server: H.serverAddress, transport: .tcp)
        #expect(try signedOnStream(h, H.request(.connectionBind) { $0.appendConnectionID(connection.id &+ 1) }, ft: dataTuple, link: data).code == 400)
        h.username = "bob"
        h.password = "builder"
        #expect(try signedOnStream(h, H.request(.connectionBind) { $0.appendConnectionID(connection.id) }, ft: dataTuple, link: data).code == 441)
        h.username = "alice"
        h.password = "wonder"
        let other = FiveTuple(client: TransportAddress(ip: H.clientAddress.ip, port: 40_101), server: H.serverAddress, transport: .tcp)
        let second = MemoryStreamLink()
        #expect(try signedOnStream(h, H.request(.connectionBind) { $0.appendConnectionID(connection.id) }, ft: other, link: second).code == 400,
                "a connection is claimed once, even by a refused bind")
        _ = h.shared.tcpConnections  // the registry every loop shares
        #expect(h.shell.joins.isEmpty)
    }

    @Test func aSuccessfulConnectionBindHandsTheConnectionOver() throws {
        let h = CoreHarness()
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        let connection = try connectedPeer(h, ft: ft, link: link)
        let data = MemoryStreamLink()
        let dataTuple = FiveTuple(client: TransportAddress(ip: H.clientAddress.ip, port: 40_100), server: H.serverAddress, transport: .tcp)
        let r = try signedOnStream(h, H.request(.connectionBind) { $0.appendConnectionID(connection.id) }, ft: dataTuple, link: data)
        #expect(r.messageClass == .successResponse)
        #expect(h.shell.joins.count == 1 && h.shell.joins[0].connection === connection && h.shell.joins[0].link === data)
    }

    @Test func aPeerConnectingToATCPAllocationIsAnnouncedOnlyWithAPermission() throws {
        let h = CoreHarness()
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        let listening = try #require(h.core.manager.allocations[ft]?.relaySocket)
        #expect(h.core.peerAccepted(on: listening, from: H.peer).0 == nil)
        _ = try signedOnStream(h, H.request(.createPermission) { $0.appendXorAddress(AttributeType.xorPeerAddress, H.peer) }, ft: ft, link: link)
        let (connection, actions) = h.core.peerAccepted(on: listening, from: H.peer)
        h.shell.perform(actions)
        let accepted = try #require(connection)
        let attempt = try StunMessage(decoding: ByteBuffer(bytes: try #require(link.take().first)))
        #expect(attempt.method == .connectionAttempt && attempt.messageClass == .indication)
        #expect(attempt.connectionID == accepted.id && attempt.xorAddress(AttributeType.xorPeerAddress) == H.peer)
    }

    @Test func aTCPAllocationEndsWithItsConnectionAndClosesItsPeerConnections() throws {
        let h = CoreHarness()
        let link = MemoryStreamLink()
        let ft = try tcpAllocation(h, link: link)
        let connection = try connectedPeer(h, ft: ft, link: link)
        h.shell.perform(h.core.streamClosed(ft))
        #expect(h.core.manager.allocations[ft] == nil)
        #expect(h.shell.closedPeerConnections.contains { $0 === connection })
        #expect(h.shared.tcpConnections.lookup(connection.id) == nil)
        #expect(h.shared.quota.total == 0 && h.shared.portPool.inUseCount == 0)
    }

    @Test func aClientGoneWhileItsRelaySocketIsBoundLeavesNothingBehind() throws {
        let h = CoreHarness()
        h.shell.deferBinds = true
        let link = MemoryStreamLink()
        let ft = FiveTuple(client: H.clientAddress, server: H.serverAddress, transport: .tcp)
        h.shell.receive(h.signed(H.allocateRequest()), from: ft, on: link)
        h.shell.perform(h.core.streamClosed(ft))
        h.shell.completeBinds()
        #expect(link.take().isEmpty)
        #expect(h.shell.closedSockets.count == 1)
        #expect(h.core.manager.allocations.isEmpty && h.core.manager.pendingCount == 0)
        // The abandoned lease: its port and quota are released with the pending allocation.
        #expect(h.shared.quota.total == 0 && h.shared.portPool.inUseCount == 0)
    }

    // MARK: Reload and sessions

    @Test func aReloadedPolicyWithdrawsWhatItRefuses() throws {
        let h = CoreHarness()
        h.allocate()
        #expect(h.channelBind(0x4001, H.peer)?.messageClass == .successResponse)
        var refusing = TurnLimits()
        refusing.peerPolicy = PeerAddressPolicy(deny: [CIDR("203.0.113.0/24")!])
        h.shared.updateLimits(refusing)
        h.shell.perform(h.core.sweep())
        #expect(h.allocation?.permissions.count == 0 && h.allocation?.channels.count == 0)
    }
}
