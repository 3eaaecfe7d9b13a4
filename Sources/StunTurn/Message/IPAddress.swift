import NIOCore

/// An IPv4 or IPv6 address as a small value type: hashable without allocation, so it can key the
/// relay path's lookup tables (permissions by peer IP, allocations by client 5-tuple).
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let isIPv6: Bool
    /// First 8 bytes of an IPv6 address (network order); 0 for IPv4.
    public let high: UInt64
    /// Last 8 bytes of an IPv6 address, or the IPv4 address in the low 32 bits (host order).
    public let low: UInt64

    /// The relay path hashes addresses for every packet (permissions by IP, channels by peer), so an
    /// IPv4 address hashes as one word and an IPv6 one as two, instead of the three synthesized fields.
    public func hash(into hasher: inout Hasher) {
        if isIPv6 { hasher.combine(high) }
        hasher.combine(low)
    }

    public init(ipv4: UInt32) {
        isIPv6 = false
        high = 0
        low = UInt64(ipv4)
    }

    public init(ipv6High: UInt64, low: UInt64) {
        isIPv6 = true
        high = ipv6High
        self.low = low
    }

    /// 4 or 16 bytes in network order.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        if bytes.count == 4 {
            self.init(ipv4: bytes.reduce(UInt32(0)) { ($0 << 8) | UInt32($1) })
        } else if bytes.count == 16 {
            let h = bytes.prefix(8).reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
            let l = bytes.dropFirst(8).reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
            self.init(ipv6High: h, low: l)
        } else {
            return nil
        }
    }

    public var ipv4: UInt32? { isIPv6 ? nil : UInt32(truncatingIfNeeded: low) }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        if isIPv6 {
            return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        }
        let v = UInt32(truncatingIfNeeded: low)
        return [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }

    /// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d,
    /// RFC 2765) or IPv4-compatible (::a.b.c.d) IPv6 address.
    public var embeddedIPv4: IPAddress? {
        guard isIPv6, high == 0 else { return nil }
        let top = low >> 32
        if top == 0xFFFF || top == 0xFFFF_0000 || (top == 0 && low > 1) {
            return IPAddress(ipv4: UInt32(truncatingIfNeeded: low))
        }
        return nil
    }

    /// The IPv4 address of an IPv4-mapped IPv6 address (::ffff:a.b.c.d), the form a dual-stack socket
    /// reports an IPv4 client in; nil for anything else.
    public var mappedIPv4: IPAddress? {
        guard isIPv6, high == 0, low >> 32 == 0xFFFF else { return nil }
        return IPAddress(ipv4: UInt32(truncatingIfNeeded: low))
    }

    /// Parses dotted-quad IPv4 or RFC 4291 textual IPv6 (with `::` and an embedded dotted quad).
    public init?(_ text: String) {
        if !text.contains(":") {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4 else { return nil }
            var v: UInt32 = 0
            for p in parts {
                guard !p.isEmpty, p.count <= 3, let b = UInt8(p) else { return nil }
                v = (v << 8) | UInt32(b)
            }
            self.init(ipv4: v)
            return
        }
        var groups: [UInt16] = []
        var tail: [UInt16] = []
        var sawDouble = false
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func parse(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let items = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, item) in items.enumerated() {
                if i == items.count - 1, item.contains(".") {
                    guard let v4 = IPAddress(String(item))?.ipv4 else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(truncatingIfNeeded: v4))
                } else {
                    guard !item.isEmpty, item.count <= 4, let g = UInt16(item, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        guard let first = parse(halves[0]) else { return nil }
        groups = first
        if halves.count == 2 {
            sawDouble = true
            guard let second = parse(halves[1]) else { return nil }
            tail = second
        }
        if sawDouble {
            guard groups.count + tail.count <= 7 else { return nil }
            groups += Array(repeating: 0, count: 8 - groups.count - tail.count) + tail
        }
        guard groups.count == 8 else { return nil }
        let h = groups[0..<4].reduce(UInt64(0)) { ($0 << 16) | UInt64($1) }
        let l = groups[4..<8].reduce(UInt64(0)) { ($0 << 16) | UInt64($1) }
        self.init(ipv6High: h, low: l)
    }

    public var description: String {
        if let v4 = ipv4 {
            return "\(v4 >> 24).\((v4 >> 16) & 0xFF).\((v4 >> 8) & 0xFF).\(v4 & 0xFF)"
        }
        let g = (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * $0)) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * $0)) }
        // Compress the longest run of zero groups (RFC 5952).
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen && j - i > 1 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        let hex = g.map { String($0, radix: 16) }
        if bestStart < 0 { return hex.joined(separator: ":") }
        let left = hex[0..<bestStart].joined(separator: ":")
        let right = hex[(bestStart + bestLen)...].joined(separator: ":")
        return left + "::" + right
    }
}

/// An IP address and port: one end of a 5-tuple.
public struct TransportAddress: Hashable, Sendable, CustomStringConvertible {
    public var ip: IPAddress
    public var port: UInt16

    public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// An IPv4 address and port hash as one word (see `IPAddress.hash(into:)`).
    public func hash(into hasher: inout Hasher) {
        if ip.isIPv6 {
            ip.hash(into: &hasher)
            hasher.combine(port)
        } else {
            hasher.combine(ip.low | UInt64(port) << 32)
        }
    }

    /// Converts a NIO socket address without allocating (no string formatting).
    public init?(_ address: SocketAddress) {
        switch address {
        case .v4(let a):
            ip = IPAddress(ipv4: UInt32(bigEndian: a.address.sin_addr.s_addr))
            port = UInt16(bigEndian: a.address.sin_port)
        case .v6(let a):
            var storage = a.address.sin6_addr
            let parsed = withUnsafeBytes(of: &storage) { IPAddress(bytes: $0) }
            guard let parsed else { return nil }
            ip = parsed
            port = UInt16(bigEndian: a.address.sin6_port)
        default:
            return nil
        }
    }

    public func socketAddress() -> SocketAddress {
        var buffer = ByteBuffer(bytes: ip.bytes)
        // Only fails for a buffer that is neither 4 nor 16 bytes long, which `bytes` never is.
        return try! SocketAddress(packedIPAddress: buffer.readSlice(length: buffer.readableBytes)!, port: Int(port))
    }

    public var description: String {
        ip.isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
