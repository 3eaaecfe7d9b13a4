/// An address block such as `10.0.0.0/8` or `fc00::/7`. A bare address means a single host. A block
/// written in the IPv4-mapped form (`::ffff:10.0.0.0/104`, `::ffff:1.2.3.4`) is the IPv4 block it maps,
/// so it matches the IPv4 addresses it names however a peer is written.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let ip = IPAddress(first) else { return nil }
        let max = ip.isIPv6 ? 128 : 32
        var length = max
        if parts.count == 2 {
            guard let l = Int(parts[1]), (0...max).contains(l) else { return nil }
            length = l
        }
        self.init(network: ip, prefixLength: length)
    }

    public init(network: IPAddress, prefixLength: Int) {
        if let v4 = network.mappedIPv4, prefixLength >= 96 {
            self.prefixLength = prefixLength - 96
            self.network = CIDR.mask(v4, prefixLength - 96)
            return
        }
        self.prefixLength = prefixLength
        self.network = CIDR.mask(network, prefixLength)
    }

    static func mask(_ ip: IPAddress, _ length: Int) -> IPAddress {
        if ip.isIPv6 {
            let hMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~0 << (64 - length))
            let lMask: UInt64 = length <= 64 ? 0 : (length >= 128 ? ~0 : ~0 << (128 - length))
            return IPAddress(ipv6High: ip.high & hMask, low: ip.low & lMask)
        }
        let m: UInt32 = length == 0 ? 0 : ~0 << (32 - length)
        return IPAddress(ipv4: UInt32(truncatingIfNeeded: ip.low) & m)
    }

    public func contains(_ ip: IPAddress) -> Bool {
        ip.isIPv6 == network.isIPv6 && CIDR.mask(ip, prefixLength) == network
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
