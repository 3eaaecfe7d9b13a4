/// TURN attributes (RFC 8656 §18): CHANNEL-NUMBER, LIFETIME, DATA, REQUESTED-ADDRESS-FAMILY,
/// EVEN-PORT, REQUESTED-TRANSPORT, DONT-FRAGMENT, RESERVATION-TOKEN.
public enum AddressFamily: UInt8, Sendable {
    case ipv4 = 0x01
    case ipv6 = 0x02
}

extension StunMessage {
    /// §18.1: a 16-bit channel number followed by 16 reserved bits.
    public var channelNumber: UInt16? {
        guard let v = attribute(AttributeType.channelNumber)?.value, v.count == 4 else { return nil }
        return UInt16(v[0]) << 8 | UInt16(v[1])
    }

    public mutating func appendChannelNumber(_ n: UInt16) { append(AttributeType.channelNumber, n.bigEndianBytes + [0, 0]) }

    /// §18.2: seconds, 32 bits.
    public var lifetime: UInt32? {
        guard let v = attribute(AttributeType.lifetime)?.value, v.count == 4 else { return nil }
        return UInt32(v)
    }

    public mutating func appendLifetime(_ seconds: UInt32) { append(AttributeType.lifetime, seconds.bigEndianBytes) }

    public var data: [UInt8]? { attribute(AttributeType.data)?.value }

    /// §18.6: family byte then 24 reserved bits. `.some(nil)` means present but not a known family.
    public var requestedAddressFamily: AddressFamily?? {
        guard let v = attribute(AttributeType.requestedAddressFamily)?.value else { return nil }
        guard v.count == 4 else { return .some(nil) }
        return .some(AddressFamily(rawValue: v[0]))
    }

    /// RFC 6062 §6.2.1 CONNECTION-ID: 32 bits naming a peer TCP connection of a TCP allocation.
    public var connectionID: UInt32? {
        guard let v = attribute(AttributeType.connectionID)?.value, v.count == 4 else { return nil }
        return UInt32(v)
    }

    public mutating func appendConnectionID(_ id: UInt32) { append(AttributeType.connectionID, id.bigEndianBytes) }

    /// RFC 8656 §18.11 ADDITIONAL-ADDRESS-FAMILY (same layout as REQUESTED-ADDRESS-FAMILY).
    public var additionalAddressFamily: AddressFamily?? {
        guard let v = attribute(AttributeType.additionalAddressFamily)?.value else { return nil }
        guard v.count == 4 else { return .some(nil) }
        return .some(AddressFamily(rawValue: v[0]))
    }

    /// RFC 8656 §18.12 ADDRESS-ERROR-CODE: the family that could not be allocated, then an error code
    /// laid out as in ERROR-CODE, then its reason phrase.
    public mutating func appendAddressErrorCode(family: AddressFamily, error: StunError) {
        append(AttributeType.addressErrorCode,
               [family.rawValue, 0, UInt8(error.code / 100), UInt8(error.code % 100)] + Array(error.reason.utf8))
    }

    /// §18.7: the R bit asks the server to reserve the next-higher port.
    public var evenPort: (present: Bool, reserveNext: Bool) {
        guard let v = attribute(AttributeType.evenPort)?.value, v.count >= 1 else { return (false, false) }
        return (true, v[0] & 0x80 != 0)
    }

    /// §18.8: the protocol number (17 = UDP, 6 = TCP) then 24 reserved bits.
    public var requestedTransport: UInt8? {
        guard let v = attribute(AttributeType.requestedTransport)?.value, v.count == 4 else { return nil }
        return v[0]
    }

    public var dontFragment: Bool { has(AttributeType.dontFragment) }

    /// §18.10: an 8-byte token.
    public var reservationToken: UInt64? {
        guard let v = attribute(AttributeType.reservationToken)?.value, v.count == 8 else { return nil }
        return v.reduce(0) { ($0 << 8) | UInt64($1) }
    }

    public mutating func appendReservationToken(_ token: UInt64) {
        append(AttributeType.reservationToken, (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * $0)) })
    }
}
