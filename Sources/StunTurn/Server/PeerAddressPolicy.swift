/// Which peers an allocation may relay to (RFC 8656 §21.2.3 leaves this to the server; we deny the
/// ranges that would turn the relay into a door to the server's own host or network by default).
///
/// Order of evaluation (as coturn's allowed-peer-ip/denied-peer-ip): an address in `allow` is
/// permitted; otherwise one in `deny` or in the built-in ranges is refused; anything else is permitted.
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) forms are
/// judged by their embedded IPv4 address as well.
public struct PeerAddressPolicy: Sendable {
    public var allow: [CIDR]
    public var deny: [CIDR]

    public init(allow: [CIDR] = [], deny: [CIDR] = []) {
        self.allow = allow
        self.deny = deny
    }

    /// Refused unless explicitly allowed.
    public static let builtInDenied: [CIDR] = [
        "0.0.0.0/8",        // "this network", unspecified
        "10.0.0.0/8",       // RFC 1918
        "100.64.0.0/10",    // CGNAT, RFC 6598
        "127.0.0.0/8",      // loopback
        "169.254.0.0/16",   // link-local
        "172.16.0.0/12",    // RFC 1918
        "192.168.0.0/16",   // RFC 1918
        "224.0.0.0/4",      // multicast
        "240.0.0.0/4",      // reserved, includes the limited broadcast 255.255.255.255
        "::/128",           // unspecified
        "::1/128",          // loopback
        "fc00::/7",         // unique local
        "fe80::/10",        // link-local
        "fec0::/10",        // site-local (deprecated)
        "ff00::/8",         // multicast
    ].map { CIDR($0)! }

    static let nat64 = CIDR("64:ff9b::/96")!

    public func permits(_ ip: IPAddress) -> Bool {
        var candidates = [ip]
        if let v4 = ip.embeddedIPv4 {
            candidates.append(v4)
        } else if Self.nat64.contains(ip) {
            candidates.append(IPAddress(ipv4: UInt32(truncatingIfNeeded: ip.low)))
        }
        if candidates.contains(where: { c in allow.contains { $0.contains(c) } }) { return true }
        for c in candidates {
            if deny.contains(where: { $0.contains(c) }) { return false }
            if Self.builtInDenied.contains(where: { $0.contains(c) }) { return false }
        }
        return true
    }
}
