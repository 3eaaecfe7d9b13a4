/// PASSWORD-ALGORITHMS (RFC 8489 §14.11) and PASSWORD-ALGORITHM (§14.12).
extension StunMessage {
    /// Each entry is the algorithm number followed by its parameters (none for MD5 and SHA-256).
    public static func encodePasswordAlgorithms(_ list: [PasswordAlgorithm]) -> [UInt8] {
        list.flatMap { $0.rawValue.bigEndianBytes + [0, 0] }
    }

    /// Raw algorithm numbers, in order; nil when malformed.
    public static func decodePasswordAlgorithms(_ v: [UInt8]) -> [UInt16]? {
        var out: [UInt16] = []
        var i = 0
        while i < v.count {
            guard i + 4 <= v.count else { return nil }
            out.append(UInt16(v[i]) << 8 | UInt16(v[i + 1]))
            let paramLength = Int(v[i + 2]) << 8 | Int(v[i + 3])
            i += 4 + ((paramLength + 3) & ~3)
        }
        return i == v.count ? out : nil
    }

    public var passwordAlgorithms: [UInt16]? {
        attribute(AttributeType.passwordAlgorithms).flatMap { Self.decodePasswordAlgorithms($0.value) }
    }

    /// The algorithm number of PASSWORD-ALGORITHM, if present and well formed: the number, a parameter
    /// length and exactly that many parameter bytes. The two algorithms there are (MD5, SHA-256, §18.5)
    /// take no parameters, so one with parameters is nil too (and the request a 400).
    public var passwordAlgorithm: UInt16? {
        guard let v = attribute(AttributeType.passwordAlgorithm)?.value, v.count == 4, v[2] == 0, v[3] == 0 else { return nil }
        return UInt16(v[0]) << 8 | UInt16(v[1])
    }
}
