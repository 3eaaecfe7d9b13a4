/// FINGERPRINT (RFC 8489 §14.7): CRC-32 (ISO HDLC, as in zlib) of the message up to the attribute,
/// XOR'd with 0x5354554E.
public enum Fingerprint {
    static let xorValue: UInt32 = 0x5354_554E

    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
        return c
    }

    public static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// The FINGERPRINT value for `prefix` (the message bytes before the attribute), computed as if
    /// the header's length field said `totalLength - 20` (so it covers the FINGERPRINT itself).
    static func value(over prefix: ArraySlice<UInt8>, lengthUpTo totalLength: Int) -> UInt32 {
        var header = Array(prefix.prefix(20))
        let l = totalLength - 20
        header[2] = UInt8((l >> 8) & 0xFF)
        header[3] = UInt8(l & 0xFF)
        return crc32(header + prefix.dropFirst(20)) ^ xorValue
    }
}
