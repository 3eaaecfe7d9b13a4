/// USERNAME (RFC 8489 §14.3, < 509 bytes), REALM (§14.9, < 128 characters), NONCE (§14.10,
/// < 128 characters), SOFTWARE (§14.14), USERHASH (§14.4).
extension StunMessage {
    public static let maxUsernameBytes = 508
    public static let maxRealmOrNonceBytes = 763

    func text(_ type: UInt16, maxBytes: Int) -> String? {
        guard let a = attribute(type), a.value.count <= maxBytes else { return nil }
        return String(validating: a.value, as: UTF8.self)
    }

    public var username: String? { text(AttributeType.username, maxBytes: Self.maxUsernameBytes) }
    public var realm: String? { text(AttributeType.realm, maxBytes: Self.maxRealmOrNonceBytes) }
    public var nonce: String? { text(AttributeType.nonce, maxBytes: Self.maxRealmOrNonceBytes) }
    public var software: String? { text(AttributeType.software, maxBytes: Self.maxRealmOrNonceBytes) }
    public var userhash: [UInt8]? {
        guard let v = attribute(AttributeType.userhash)?.value, v.count == 32 else { return nil }
        return v
    }

    public mutating func appendText(_ type: UInt16, _ text: String) {
        append(type, Array(text.utf8))
    }
}
