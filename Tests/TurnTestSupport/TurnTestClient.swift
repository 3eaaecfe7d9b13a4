import StunTurn

/// A minimal TURN client for driving the server in tests: it speaks the long-term credential
/// mechanism and lets a test add or corrupt anything.
public final class TurnTestClient {
    public let socket = UDPTestSocket()
    public let serverPort: UInt16
    public var username: String
    public var password: String
    public var realm = ""
    public var nonce = ""
    public var algorithm: PasswordAlgorithm = .md5
    public var offeredAlgorithms: [UInt8] = []
    public var useSHA256Integrity = false

    public init(serverPort: UInt16, username: String = "alice", password: String = "wonder") {
        self.serverPort = serverPort
        self.username = username
        self.password = password
    }

    public var key: [UInt8] { algorithm.key(username: username, realm: realm, password: password) }

    /// Sends `m` as is and returns the response with the same transaction id.
    public func exchange(_ bytes: [UInt8], transactionID: TransactionID) -> StunMessage? {
        socket.send(bytes, to: serverPort)
        while let (data, _) = socket.receive() {
            if let r = try? StunMessage(decoding: data), r.transactionID == transactionID { return r }
        }
        return nil
    }

    /// Adds USERNAME, REALM, NONCE (and the password algorithm attributes) and MESSAGE-INTEGRITY.
    public func signed(_ m: StunMessage, fingerprint: Bool = false) -> [UInt8] {
        var m = m
        m.appendText(AttributeType.username, username)
        m.appendText(AttributeType.realm, realm)
        m.appendText(AttributeType.nonce, nonce)
        if algorithm != .md5 {
            m.append(AttributeType.passwordAlgorithms, offeredAlgorithms)
            m.append(AttributeType.passwordAlgorithm, algorithm.rawValue.bigEndianPair + [0, 0])
        }
        return m.encode(integrity: useSHA256Integrity ? .sha256(key: key) : .sha1(key: key), fingerprint: fingerprint)
    }

    /// Sends an authenticated request, learning realm and nonce from a 401/438 first if needed.
    public func request(_ m: StunMessage) -> StunMessage? {
        if !realm.isEmpty, let r = exchange(signed(m), transactionID: m.transactionID), r.errorCode?.code != 438 {
            return r
        }
        guard let challenge = exchange(m.encode(), transactionID: m.transactionID) else { return nil }
        learn(challenge)
        var again = m
        again.transactionID = .random()
        return exchange(signed(again), transactionID: again.transactionID)
    }

    /// Sends an unauthenticated Allocate and learns realm, nonce and offered algorithms from the 401.
    public func fetchChallenge() -> Bool {
        let probe = Self.allocateRequest()
        guard let challenge = exchange(probe.encode(), transactionID: probe.transactionID), challenge.errorCode?.code == 401 else {
            return false
        }
        learn(challenge)
        return true
    }

    public func learn(_ challenge: StunMessage) {
        if let r = challenge.realm { realm = r }
        if let n = challenge.nonce { nonce = n }
        if let a = challenge.attribute(AttributeType.passwordAlgorithms) { offeredAlgorithms = a.value }
    }

    public static func allocateRequest(transport: UInt8 = 17) -> StunMessage {
        var m = StunMessage(method: .allocate, messageClass: .request)
        m.append(AttributeType.requestedTransport, [transport, 0, 0, 0])
        return m
    }

    public func allocate() -> StunMessage? { request(Self.allocateRequest()) }

    public func createPermission(_ peer: TransportAddress) -> StunMessage? {
        var m = StunMessage(method: .createPermission, messageClass: .request)
        m.appendXorAddress(AttributeType.xorPeerAddress, peer)
        return request(m)
    }

    /// A Send indication (RFC 8656 §11.1) with `data` for `peer`; indications get no answer.
    public func sendIndication(_ data: [UInt8], to peer: TransportAddress) {
        var m = StunMessage(method: .send, messageClass: .indication)
        m.appendXorAddress(AttributeType.xorPeerAddress, peer)
        m.append(AttributeType.data, data)
        socket.send(m.encode(), to: serverPort)
    }

    public func channelBind(_ number: UInt16, _ peer: TransportAddress) -> StunMessage? {
        var m = StunMessage(method: .channelBind, messageClass: .request)
        m.appendChannelNumber(number)
        m.appendXorAddress(AttributeType.xorPeerAddress, peer)
        return request(m)
    }

    public func refresh(lifetime: UInt32) -> StunMessage? {
        var m = StunMessage(method: .refresh, messageClass: .request)
        m.appendLifetime(lifetime)
        return request(m)
    }
}

extension UInt16 {
    public var bigEndianPair: [UInt8] { [UInt8(self >> 8), UInt8(self & 0xFF)] }
}

extension StunMessage {
    /// What an attacker who replays a signed request can do: `encoded` with one more attribute after its
    /// last one (and so after MESSAGE-INTEGRITY), the header's length grown to match.
    public static func appending(_ type: UInt16, _ value: [UInt8], to encoded: [UInt8]) -> [UInt8] {
        var out = encoded + type.bigEndianPair + UInt16(value.count).bigEndianPair + value
        out += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
        let length = out.count - 20
        out[2] = UInt8(length >> 8)
        out[3] = UInt8(length & 0xFF)
        return out
    }
}
