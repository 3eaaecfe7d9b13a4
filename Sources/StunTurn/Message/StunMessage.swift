import NIOCore

/// The 96-bit transaction id (RFC 8489 §5).
public struct TransactionID: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt32, UInt32, UInt32)

    public init(_ a: UInt32, _ b: UInt32, _ c: UInt32) { bytes = (a, b, c) }

    public init?(_ raw: [UInt8]) {
        guard raw.count == 12 else { return nil }
        func word(_ i: Int) -> UInt32 { raw[i..<i + 4].reduce(0) { ($0 << 8) | UInt32($1) } }
        bytes = (word(0), word(4), word(8))
    }

    public static func random() -> TransactionID {
        var g = SystemRandomNumberGenerator()
        return TransactionID(g.next(), g.next(), g.next())
    }

    public var array: [UInt8] {
        [bytes.0, bytes.1, bytes.2].flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * $0)) } }
    }

    public static func == (l: TransactionID, r: TransactionID) -> Bool {
        l.bytes.0 == r.bytes.0 && l.bytes.1 == r.bytes.1 && l.bytes.2 == r.bytes.2
    }

    public func hash(into h: inout Hasher) {
        h.combine(bytes.0)
        h.combine(bytes.1)
        h.combine(bytes.2)
    }

    public var description: String { array.map { String($0, radix: 16).leftPadded(2) }.joined() }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// One attribute: type and raw value (without padding).
public struct StunAttribute: Equatable, Sendable {
    public var type: UInt16
    public var value: [UInt8]

    public init(type: UInt16, value: [UInt8]) {
        self.type = type
        self.value = value
    }
}

public enum StunDecodeError: Error, Equatable, Sendable {
    /// Fewer than 20 bytes, or fewer than the header's length field promises.
    case truncated
    /// The top two bits are not zero or the magic cookie is wrong: not a STUN message.
    case notStun
    /// The length field is not a multiple of 4, or does not match the datagram.
    case badLength
    /// An attribute's length runs past the end of the message.
    case badAttribute
    /// FINGERPRINT present but not the last attribute, or its CRC does not match.
    case badFingerprint
}

/// A STUN message (RFC 8489 §5, §14). Decoded messages keep their raw bytes so that
/// MESSAGE-INTEGRITY and FINGERPRINT can be checked over exactly what was received.
public struct StunMessage: Sendable {
    public var method: StunMethod
    public var messageClass: StunClass
    public var transactionID: TransactionID
    public var attributes: [StunAttribute]

    /// The bytes this message was decoded from (nil for messages built locally).
    public private(set) var raw: [UInt8]?
    /// Byte offset (from the start of the message) of each attribute's header, parallel to `attributes`.
    public private(set) var attributeOffsets: [Int] = []
    /// Attributes a decoded message carried after its integrity attribute that receivers must ignore
    /// (RFC 8489 §14.5, §14.6); they are not in `attributes`. Counted, never read.
    public private(set) var ignoredAfterIntegrity = 0

    public init(method: StunMethod, messageClass: StunClass, transactionID: TransactionID = .random(),
                attributes: [StunAttribute] = []) {
        self.method = method
        self.messageClass = messageClass
        self.transactionID = transactionID
        self.attributes = attributes
    }

    // MARK: Header type field (RFC 8489 §5, Figure 3)

    static func encodeType(_ method: StunMethod, _ cls: StunClass) -> UInt16 {
        let m = method.rawValue
        let c = cls.rawValue
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0x1) << 4) | ((c & 0x2) << 7)
    }

    static func decodeType(_ t: UInt16) -> (StunMethod, StunClass) {
        let m = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
        let c = ((t & 0x0010) >> 4) | ((t & 0x0100) >> 7)
        return (StunMethod(rawValue: m), StunClass(rawValue: c)!)
    }

    // MARK: Decoding

    public init(decoding buffer: ByteBuffer) throws(StunDecodeError) {
        try self.init(decoding: Array(buffer.readableBytesView))
    }

    /// Decodes one message that occupies all of `bytes` (a datagram, or a frame cut by the stream framer).
    public init(decoding bytes: [UInt8]) throws(StunDecodeError) {
        guard bytes.count >= 20 else { throw .truncated }
        guard bytes[0] & 0xC0 == 0,
              bytes[4] == 0x21, bytes[5] == 0x12, bytes[6] == 0xA4, bytes[7] == 0x42
        else { throw .notStun }
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        guard length % 4 == 0 else { throw .badLength }
        guard bytes.count >= 20 + length else { throw .truncated }
        guard bytes.count == 20 + length else { throw .badLength }
        (method, messageClass) = Self.decodeType(UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
        transactionID = TransactionID(Array(bytes[8..<20]))!
        attributes = []
        var offset = 20
        var offsets: [Int] = []
        // What may still follow: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
        // count (RFC 8489 §14.5), after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT (§14.6). Anything else
        // there is outside what the integrity covers, so handlers never see it: a replayed signed request
        // cannot be given extra attributes.
        var integritySeen: UInt16?
        while offset < bytes.count {
            guard offset + 4 <= bytes.count else { throw .badAttribute }
            let type = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
            let len = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let start = offset + 4
            guard start + len <= bytes.count else { throw .badAttribute }
            let value = Array(bytes[start..<start + len])
            let attributeOffset = offset
            offset = start + ((len + 3) & ~3)
            if type == AttributeType.fingerprint {
                // FINGERPRINT is always last (RFC 8489 §14.7).
                guard offset == bytes.count, len == 4 else { throw .badFingerprint }
                guard Fingerprint.value(over: bytes[0..<(offset - 8)], lengthUpTo: offset) == UInt32(value)
                else { throw .badFingerprint }
            } else if let seen = integritySeen,
                      !(seen == AttributeType.messageIntegrity && type == AttributeType.messageIntegritySHA256) {
                ignoredAfterIntegrity += 1
                continue
            }
            if type == AttributeType.messageIntegrity || type == AttributeType.messageIntegritySHA256 {
                integritySeen = type
            }
            attributes.append(StunAttribute(type: type, value: value))
            offsets.append(attributeOffset)
        }
        guard offset == bytes.count else { throw .badAttribute }
        raw = bytes
        attributeOffsets = offsets
    }

    // MARK: Access

    public func attribute(_ type: UInt16) -> StunAttribute? {
        attributes.first { $0.type == type }
    }

    public func attributes(_ type: UInt16) -> [StunAttribute] {
        attributes.filter { $0.type == type }
    }

    public func has(_ type: UInt16) -> Bool { attributes.contains { $0.type == type } }

    /// Comprehension-required attributes the server does not know (RFC 8489 §7.3.1 → 420). Those after
    /// the integrity attribute were already left out by the decoder.
    public var unknownRequiredAttributes: [UInt16] {
        var out: [UInt16] = []
        for a in attributes where AttributeType.isComprehensionRequired(a.type)
            && !AttributeType.understoodRequired.contains(a.type) && !out.contains(a.type) {
            out.append(a.type)
        }
        return out
    }

    public mutating func append(_ type: UInt16, _ value: [UInt8]) {
        attributes.append(StunAttribute(type: type, value: value))
    }

    // MARK: Encoding

    /// How an outgoing message is protected.
    public enum Integrity: Sendable {
        case none
        case sha1(key: [UInt8])
        case sha256(key: [UInt8])
    }

    /// Serialises the message, appending MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT as asked
    /// (RFC 8489 §14.5, §14.6, §14.7: each computed with the length field covering itself).
    public func encode(integrity: Integrity = .none, fingerprint: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(20 + attributes.reduce(0) { $0 + 4 + (($1.value.count + 3) & ~3) } + 64)
        let type = Self.encodeType(method, messageClass)
        out += [UInt8(type >> 8), UInt8(type & 0xFF), 0, 0, 0x21, 0x12, 0xA4, 0x42]
        out += transactionID.array
        for a in attributes { Self.appendAttribute(&out, a.type, a.value) }
        func setLength(_ l: Int) {
            out[2] = UInt8((l >> 8) & 0xFF)
            out[3] = UInt8(l & 0xFF)
        }
        switch integrity {
        case .none:
            break
        case .sha1(let key):
            setLength(out.count - 20 + 24)
            let mac = MessageIntegrity.hmacSHA1(key: key, data: out)
            Self.appendAttribute(&out, AttributeType.messageIntegrity, mac)
        case .sha256(let key):
            setLength(out.count - 20 + 36)
            let mac = MessageIntegrity.hmacSHA256(key: key, data: out)
            Self.appendAttribute(&out, AttributeType.messageIntegritySHA256, mac)
        }
        if fingerprint {
            setLength(out.count - 20 + 8)
            let crc = Fingerprint.value(over: out[...], lengthUpTo: out.count + 8)
            Self.appendAttribute(&out, AttributeType.fingerprint, crc.bigEndianBytes)
        }
        setLength(out.count - 20)
        return out
    }

    static func appendAttribute(_ out: inout [UInt8], _ type: UInt16, _ value: [UInt8]) {
        out += [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)]
        out += value
        let pad = (4 - value.count % 4) % 4
        if pad > 0 { out += repeatElement(0, count: pad) }
    }
}

extension UInt32 {
    init(_ bytes: [UInt8]) {
        self = bytes.prefix(4).reduce(0) { ($0 << 8) | UInt32($1) }
    }

    var bigEndianBytes: [UInt8] {
        [UInt8(self >> 24), UInt8(truncatingIfNeeded: self >> 16), UInt8(truncatingIfNeeded: self >> 8),
         UInt8(truncatingIfNeeded: self)]
    }
}

extension UInt16 {
    var bigEndianBytes: [UInt8] { [UInt8(self >> 8), UInt8(truncatingIfNeeded: self)] }
}
