import NIOCore
import Testing
@testable import StunTurn

@Suite struct CodecTests {
    let tid = TransactionID(0x0102_0304, 0x0506_0708, 0x090A_0B0C)

    func roundTrip(_ m: StunMessage, integrity: StunMessage.Integrity = .none, fingerprint: Bool = false) throws -> StunMessage {
        try StunMessage(decoding: m.encode(integrity: integrity, fingerprint: fingerprint))
    }

    @Test func messageTypeEncodesEveryMethodAndClass() {
        for method in [StunMethod.binding, .allocate, .refresh, .send, .data, .createPermission, .channelBind, .connect] {
            for cls in [StunClass.request, .indication, .successResponse, .errorResponse] {
                let t = StunMessage.encodeType(method, cls)
                #expect(t & 0xC000 == 0)
                let (m, c) = StunMessage.decodeType(t)
                #expect(m == method && c == cls)
            }
        }
        #expect(StunMessage.encodeType(.allocate, .errorResponse) == 0x0113)
        #expect(StunMessage.encodeType(.data, .indication) == 0x0017)
    }

    @Test func addressAttributesRoundTripForBothFamilies() throws {
        let v4 = TransportAddress(ip: IPAddress("203.0.113.7")!, port: 5000)
        let v6 = TransportAddress(ip: IPAddress("2001:db8::42")!, port: 65535)
        var m = StunMessage(method: .allocate, messageClass: .successResponse, transactionID: tid)
        m.appendXorAddress(AttributeType.xorRelayedAddress, v4)
        m.appendXorAddress(AttributeType.xorMappedAddress, v6)
        m.appendXorAddress(AttributeType.xorPeerAddress, v4)
        m.appendXorAddress(AttributeType.xorPeerAddress, v6)
        m.append(AttributeType.mappedAddress, AddressAttribute.encode(v4))
        m.append(AttributeType.alternateServer, AddressAttribute.encode(v6))
        let d = try roundTrip(m)
        #expect(d.xorAddress(AttributeType.xorRelayedAddress) == v4)
        #expect(d.xorAddress(AttributeType.xorMappedAddress) == v6)
        #expect(d.xorPeerAddresses == [v4, v6])
        #expect(d.mappedAddress == v4)
        #expect(AddressAttribute.decode(d.attribute(AttributeType.alternateServer)!.value) == v6)
        // The XOR'd form never shows the plain address.
        #expect(d.attribute(AttributeType.xorRelayedAddress)!.value != AddressAttribute.encode(v4))
    }

    @Test func malformedAddressesAreRejected() {
        #expect(AddressAttribute.decode([0, 1, 0, 0, 1, 2, 3]) == nil)
        #expect(AddressAttribute.decode([0, 3, 0, 0, 1, 2, 3, 4]) == nil)
        #expect(AddressAttribute.decodeXor([0, 2, 0, 0, 1, 2, 3, 4], transactionID: tid) == nil)
    }

    @Test func textAttributesRoundTrip() throws {
        var m = StunMessage(method: .allocate, messageClass: .request, transactionID: tid)
        m.appendText(AttributeType.username, "alice")
        m.appendText(AttributeType.realm, "example.org")
        m.appendText(AttributeType.nonce, "abc")
        m.appendText(AttributeType.software, "webrtc-server")
        m.append(AttributeType.userhash, userHash(username: "alice", realm: "example.org"))
        let d = try roundTrip(m)
        #expect(d.username == "alice")
        #expect(d.realm == "example.org")
        #expect(d.nonce == "abc")
        #expect(d.software == "webrtc-server")
        #expect(d.userhash == hex("435b7933096a304d3c734cfb833ec9075bd47ab1c0160321aed31c06a8c7009e"))
    }

    @Test func overlongUsernameIsNotAccepted() throws {
        var m = StunMessage(method: .allocate, messageClass: .request, transactionID: tid)
        m.append(AttributeType.username, [UInt8](repeating: 0x61, count: 600))
        #expect(try roundTrip(m).username == nil)
    }

    @Test func errorCodeAndUnknownAttributesRoundTrip() throws {
        var m = StunMessage(method: .allocate, messageClass: .errorResponse, transactionID: tid)
        m.append(AttributeType.errorCode, StunError.unknownAttribute.encoded)
        m.appendUnknownAttributes([0x0031, 0x7FFF, 0x0003])
        let d = try roundTrip(m)
        #expect(d.errorCode == StunError(420, "Unknown Attribute"))
        #expect(d.unknownAttributesList == [0x0031, 0x7FFF, 0x0003])
        #expect(StunError.decode(StunError.insufficientCapacity.encoded)?.code == 508)
    }

    @Test func passwordAlgorithmAttributesRoundTrip() throws {
        var m = StunMessage(method: .allocate, messageClass: .request, transactionID: tid)
        m.append(AttributeType.passwordAlgorithms, StunMessage.encodePasswordAlgorithms([.md5, .sha256]))
        m.append(AttributeType.passwordAlgorithm, [0, 2, 0, 0])
        let d = try roundTrip(m)
        #expect(d.passwordAlgorithms == [1, 2])
        #expect(d.passwordAlgorithm == 2)
        #expect(StunMessage.decodePasswordAlgorithms([0, 1, 0, 8, 1, 2]) == nil)
    }

    @Test func turnAttributesRoundTrip() throws {
        var m = StunMessage(method: .allocate, messageClass: .request, transactionID: tid)
        m.appendChannelNumber(0x4001)
        m.appendLifetime(1234)
        m.append(AttributeType.data, [1, 2, 3, 4, 5])
        m.append(AttributeType.requestedAddressFamily, [2, 0, 0, 0])
        m.append(AttributeType.evenPort, [0x80])
        m.append(AttributeType.requestedTransport, [17, 0, 0, 0])
        m.append(AttributeType.dontFragment, [])
        m.appendReservationToken(0x0102_0304_0506_0708)
        let d = try roundTrip(m)
        #expect(d.channelNumber == 0x4001)
        #expect(d.lifetime == 1234)
        #expect(d.data == [1, 2, 3, 4, 5])
        #expect(d.requestedAddressFamily == .some(.ipv6))
        #expect(d.evenPort.present && d.evenPort.reserveNext)
        #expect(d.requestedTransport == 17)
        #expect(d.dontFragment)
        #expect(d.reservationToken == 0x0102_0304_0506_0708)
    }

    @Test func integritySha1AndSha256AndFingerprintVerify() throws {
        let key = PasswordAlgorithm.sha256.key(username: "alice", realm: "example.org", password: "wonder")
        for integrity in [StunMessage.Integrity.sha1(key: key), .sha256(key: key)] {
            var m = StunMessage(method: .refresh, messageClass: .request, transactionID: tid)
            m.appendLifetime(0)
            let bytes = m.encode(integrity: integrity, fingerprint: true)
            let d = try StunMessage(decoding: bytes)
            #expect(MessageIntegrity.verify(d, key: key))
            #expect(!MessageIntegrity.verify(d, key: Array(key.reversed())))
            #expect(d.attributes.last?.type == AttributeType.fingerprint)
        }
    }

    @Test func attributesAfterMessageIntegrityAreLeftOutOfTheDecodedMessage() throws {
        let key = PasswordAlgorithm.md5.key(username: "alice", realm: "example.org", password: "wonder")
        var m = StunMessage(method: .refresh, messageClass: .request, transactionID: tid)
        m.appendLifetime(600)
        let signed = m.encode(integrity: .sha1(key: key))
        // RFC 8489 §14.5: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count.
        let tampered = StunMessage.appending(AttributeType.lifetime, [0, 0, 0, 0], to: signed)
        let d = try StunMessage(decoding: tampered)
        #expect(d.lifetime == 600)
        #expect(d.attributes(AttributeType.lifetime).count == 1)
        #expect(d.ignoredAfterIntegrity == 1)
        #expect(MessageIntegrity.verify(d, key: key), "the integrity still covers what it covered")

        // §14.6: after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts, and that stays last and checked.
        let sha = m.encode(integrity: .sha256(key: key))
        var withPeer = StunMessage.appending(AttributeType.xorPeerAddress, [0, 1, 0, 0, 1, 2, 3, 4], to: sha)
        withPeer = StunMessage.appending(AttributeType.messageIntegrity, [UInt8](repeating: 0, count: 20), to: withPeer)
        let d2 = try StunMessage(decoding: withPeer)
        #expect(!d2.has(AttributeType.xorPeerAddress))
        #expect(!d2.has(AttributeType.messageIntegrity))
        #expect(d2.ignoredAfterIntegrity == 2)

        // MESSAGE-INTEGRITY then MESSAGE-INTEGRITY-SHA256 then FINGERPRINT: all three are kept.
        var both = m
        both.append(AttributeType.messageIntegrity, [UInt8](repeating: 0, count: 20))
        let d3 = try StunMessage(decoding: both.encode(integrity: .sha256(key: key), fingerprint: true))
        #expect(d3.attributes.map(\.type).suffix(3)
                == [AttributeType.messageIntegrity, AttributeType.messageIntegritySHA256, AttributeType.fingerprint])
        #expect(d3.ignoredAfterIntegrity == 0)
    }

    @Test func longTermKeysFollowRFC8489Section9_2_2() {
        #expect(PasswordAlgorithm.md5.key(username: "alice", realm: "example.org", password: "wonder")
                == hex("d18bc266a0640931a539367a522a3fbb"))
        #expect(PasswordAlgorithm.sha256.key(username: "alice", realm: "example.org", password: "wonder")
                == hex("b5e8c518c37402640dadde930a916907e0bffabb1fe781017b2bd3be9da24b0f"))
    }

    @Test func unknownComprehensionRequiredAttributesAreListedOptionalOnesAreNot() throws {
        var m = StunMessage(method: .allocate, messageClass: .request, transactionID: tid)
        m.append(0x0031, [0, 0, 0, 0])
        m.append(0xC001, [1])
        m.append(0x0031, [0, 0, 0, 0])
        #expect(try roundTrip(m).unknownRequiredAttributes == [0x0031])
    }

    @Test func badInputIsRejectedWithTheRightError() {
        let good = StunMessage(method: .binding, messageClass: .request, transactionID: tid).encode()
        #expect(throws: StunDecodeError.truncated) { try StunMessage(decoding: Array(good.prefix(19))) }
        var notStun = good
        notStun[4] = 0
        #expect(throws: StunDecodeError.notStun) { try StunMessage(decoding: notStun) }
        var highBits = good
        highBits[0] = 0x80
        #expect(throws: StunDecodeError.notStun) { try StunMessage(decoding: highBits) }
        var oddLength = good + [0, 0]
        oddLength[3] = 2
        #expect(throws: StunDecodeError.badLength) { try StunMessage(decoding: oddLength) }
        var lyingLength = good
        lyingLength[3] = 8
        #expect(throws: StunDecodeError.truncated) { try StunMessage(decoding: lyingLength) }
        var shortLength = good + [0, 0x20, 0, 0]
        shortLength[3] = 0
        #expect(throws: StunDecodeError.badLength) { try StunMessage(decoding: shortLength) }
        // An attribute claiming 65535 bytes inside an 8-byte body.
        var hugeAttribute = good + [0x00, 0x06, 0xFF, 0xFF, 0x61, 0x61, 0x61, 0x61]
        hugeAttribute[3] = 8
        #expect(throws: StunDecodeError.badAttribute) { try StunMessage(decoding: hugeAttribute) }
    }

    @Test func channelDataParsesWithoutCopyingAndRejectsShortFrames() {
        var payload = ByteBuffer(bytes: [9, 8, 7])
        var frame = ByteBuffer()
        ChannelData.write(channel: 0x4002, payload: payload, into: &frame, padded: true)
        #expect(frame.readableBytes == 8)
        let parsed = ChannelData.parse(frame)
        #expect(parsed?.channel == 0x4002)
        #expect(parsed.map { Array($0.payload.readableBytesView) } == [9, 8, 7])
        #expect(ChannelData.parse(ByteBuffer(bytes: [0x40, 0x01, 0x00, 0x09, 1, 2])) == nil)
        #expect(ChannelData.parse(ByteBuffer(bytes: [0x40, 0x01])) == nil)
        #expect(ChannelData.isChannelData(firstByte: 0x40) && ChannelData.isChannelData(firstByte: 0x7F))
        #expect(!ChannelData.isChannelData(firstByte: 0x00) && !ChannelData.isChannelData(firstByte: 0x80))
        payload.clear()
    }

    @Test func dataIndicationIsAValidStunMessage() throws {
        let peer = TransportAddress(ip: IPAddress("198.51.100.9")!, port: 4242)
        let buffer = DataIndication.encode(peer: peer, payload: ByteBuffer(bytes: [1, 2, 3, 4, 5]), allocator: ByteBufferAllocator())
        let m = try StunMessage(decoding: buffer)
        #expect(m.method == .data && m.messageClass == .indication)
        #expect(m.xorAddress(AttributeType.xorPeerAddress) == peer)
        #expect(m.data == [1, 2, 3, 4, 5])
    }

    @Test func ipAddressTextRoundTrips() {
        for text in ["0.0.0.0", "192.0.2.1", "255.255.255.255", "::", "::1", "2001:db8::42", "fe80::1:2", "::ffff:127.0.0.1"] {
            let ip = IPAddress(text)
            #expect(ip != nil, "\(text)")
            #expect(IPAddress(ip!.description) == ip)
        }
        #expect(IPAddress("::ffff:127.0.0.1")?.embeddedIPv4 == IPAddress("127.0.0.1"))
        for bad in ["1.2.3", "1.2.3.256", "1::2::3", "12345::", "abc", ""] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
    }
}
