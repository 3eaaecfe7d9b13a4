/// MAPPED-ADDRESS (RFC 8489 §14.1), XOR-MAPPED-ADDRESS (§14.2), ALTERNATE-SERVER (§14.15),
/// XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS (RFC 8656 §18.3, §18.5).
public enum AddressAttribute {
    static let familyIPv4: UInt8 = 0x01
    static let familyIPv6: UInt8 = 0x02

    public static func encode(_ address: TransportAddress) -> [UInt8] {
        let ip = address.ip.bytes
        return [0, address.ip.isIPv6 ? familyIPv6 : familyIPv4] + address.port.bigEndianBytes + ip
    }

    public static func decode(_ value: [UInt8]) -> TransportAddress? {
        guard value.count >= 4 else { return nil }
        let port = UInt16(value[2]) << 8 | UInt16(value[3])
        switch value[1] {
        case familyIPv4 where value.count == 8:
            return TransportAddress(ip: IPAddress(bytes: value[4..<8])!, port: port)
        case familyIPv6 where value.count == 20:
            return TransportAddress(ip: IPAddress(bytes: value[4..<20])!, port: port)
        default:
            return nil
        }
    }

    /// X-Port is the port XOR the top 16 bits of the cookie; X-Address is the address XOR the cookie
    /// (IPv4) or the cookie followed by the transaction id (IPv6) (RFC 8489 §14.2).
    static func xorMask(_ transactionID: TransactionID, count: Int) -> [UInt8] {
        (stunMagicCookie.bigEndianBytes + transactionID.array).prefix(count).map { $0 }
    }

    public static func encodeXor(_ address: TransportAddress, transactionID: TransactionID) -> [UInt8] {
        var v = encode(address)
        let mask = xorMask(transactionID, count: v.count - 4)
        v[2] ^= 0x21
        v[3] ^= 0x12
        for i in 0..<mask.count { v[4 + i] ^= mask[i] }
        return v
    }

    public static func decodeXor(_ value: [UInt8], transactionID: TransactionID) -> TransportAddress? {
        guard value.count == 8 || value.count == 20 else { return nil }
        var v = value
        let mask = xorMask(transactionID, count: v.count - 4)
        v[2] ^= 0x21
        v[3] ^= 0x12
        for i in 0..<mask.count { v[4 + i] ^= mask[i] }
        return decode(v)
    }
}

extension StunMessage {
    public mutating func appendXorAddress(_ type: UInt16, _ address: TransportAddress) {
        append(type, AddressAttribute.encodeXor(address, transactionID: transactionID))
    }

    public func xorAddress(_ type: UInt16) -> TransportAddress? {
        attribute(type).flatMap { AddressAttribute.decodeXor($0.value, transactionID: transactionID) }
    }

    /// Every XOR-PEER-ADDRESS (CreatePermission may carry several, RFC 8656 §9.1). nil if one is malformed.
    public var xorPeerAddresses: [TransportAddress]? {
        var out: [TransportAddress] = []
        for a in attributes(AttributeType.xorPeerAddress) {
            guard let addr = AddressAttribute.decodeXor(a.value, transactionID: transactionID) else { return nil }
            out.append(addr)
        }
        return out
    }

    public var mappedAddress: TransportAddress? {
        attribute(AttributeType.mappedAddress).flatMap { AddressAttribute.decode($0.value) }
    }
}
