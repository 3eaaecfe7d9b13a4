import Auth
import Crypto

/// MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) and MESSAGE-INTEGRITY-SHA256 (§14.6).
public enum MessageIntegrity {
    static func hmacSHA1(key: [UInt8], data: [UInt8]) -> [UInt8] {
        Array(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
    }

    public enum Kind: Sendable, Equatable { case sha1, sha256 }

    /// Which integrity attribute a received message carries. When both are present the SHA-256 one
    /// is the one that counts (§14.6), but only if it follows MESSAGE-INTEGRITY as §14.5 orders.
    public static func kind(of message: StunMessage) -> Kind? {
        if message.has(AttributeType.messageIntegritySHA256) { return .sha256 }
        if message.has(AttributeType.messageIntegrity) { return .sha1 }
        return nil
    }

    /// Checks the integrity attribute of a decoded message against `key`: the HMAC runs over the
    /// bytes before the attribute, with the header length set to end just after it.
    public static func verify(_ message: StunMessage, key: [UInt8]) -> Bool {
        guard let raw = message.raw, let kind = kind(of: message) else { return false }
        let type = kind == .sha256 ? AttributeType.messageIntegritySHA256 : AttributeType.messageIntegrity
        guard let index = message.attributes.firstIndex(where: { $0.type == type }) else { return false }
        let offset = message.attributeOffsets[index]
        let received = message.attributes[index].value
        switch kind {
        case .sha1: guard received.count == 20 else { return false }
        case .sha256: guard received.count >= 16, received.count <= 32, received.count % 4 == 0 else { return false }
        }
        var covered = Array(raw[0..<offset])
        let length = offset + 4 + received.count - 20
        covered[2] = UInt8((length >> 8) & 0xFF)
        covered[3] = UInt8(length & 0xFF)
        let mac = kind == .sha1 ? hmacSHA1(key: key, data: covered) : hmacSHA256(key: key, data: covered)
        return constantTimeEqual(Array(mac.prefix(received.count)), received)
    }
}

/// The password algorithms of RFC 8489 §18.5 and the long-term key each derives (§9.2.2).
public enum PasswordAlgorithm: UInt16, Sendable, CaseIterable {
    case md5 = 0x0001
    case sha256 = 0x0002

    /// key = H(username ":" realm ":" password).
    public func key(username: String, realm: String, password: String) -> [UInt8] {
        switch self {
        case .md5: return StoredSecret.md5Key(username: username, realm: realm, password: password)
        case .sha256: return Array(SHA256.hash(data: Array("\(username):\(realm):\(password)".utf8)))
        }
    }

    /// The key for `secret`: derived from a password, or a stored long-term key as it is (which serves
    /// MD5 only: nil for SHA-256).
    public func key(username: String, realm: String, secret: StoredSecret) -> [UInt8]? {
        switch secret {
        case .password(let p): return key(username: username, realm: realm, password: p)
        case .longTermKey(let k): return self == .md5 ? k : nil
        }
    }
}

/// USERHASH (RFC 8489 §14.4): SHA-256(username ":" realm).
public func userHash(username: String, realm: String) -> [UInt8] {
    Array(SHA256.hash(data: Array("\(username):\(realm)".utf8)))
}
