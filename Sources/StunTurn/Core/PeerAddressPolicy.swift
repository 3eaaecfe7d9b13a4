/// Which peers an allocation may relay to (RFC 8656 §21.2.3 leaves this to the server; we deny the
/// ranges that would turn the relay into a door to the server's own host or network by default).
///
/// Order of evaluation (as coturn's allowed-peer-ip/denied-peer-ip): an address in `allow` is
/// permitted; otherwise one in `deny` or in the built-in ranges is refused; one of this host's own
/// addresses is permitted only at a relay port (another allocation's relayed address, so that two clients
/// relayed by this server reach each other) and refused at any other port; anything else is permitted.
///
/// An IPv6 address that carries an IPv4 address is judged by that IPv4 address as well: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::/48`) and Teredo (`2001:0::/32`, its server and its
/// client address). `allow` and `deny` entries written in the IPv4-mapped form are IPv4 entries (see `CIDR`).
public struct PeerAddressPolicy: Sendable {
    public var allow: [CIDR]
    public var deny: [CIDR]
    /// This host's own addresses: every interface address and the configured listen, relay and external
    /// addresses (filled in by the TURN server at start and on reload, not by configuration).
    public var hostAddresses: Set<IPAddress>
    /// The relay port range: the only ports of `hostAddresses` a peer may have.
    public var relayPorts: ClosedRange<UInt16>

    public init(allow: [CIDR] = [], deny: [CIDR] = [], hostAddresses: Set<IPAddress> = [],
                relayPorts: ClosedRange<UInt16> = 49152...65535) {
        self.allow = allow
        self.deny = deny
        self.hostAddresses = hostAddresses
        self.relayPorts = relayPorts
    }

    /// Refused unless explicitly allowed.
    public static let builtInDenied: [CIDR] = [
        "0.0.0.0/8",        // "this network", unspecified
        "10.0.0.0/8",       // RFC 1918
        "100.64.0.0/10",    // CGNAT, RFC 6598
        "127.0.0.0/8",      // loopback
        "169.254.0.0/16",   // link-local
        "172.16.0.0/12",    // RFC 1918
        "192.0.0.0/24",     // IETF protocol assignments, RFC 6890 (DS-Lite B4s, NAT64 discovery)
        "192.168.0.0/16",   // RFC 1918
        "198.18.0.0/15",    // benchmarking, RFC 2544 (used for internal networks)
        "224.0.0.0/4",      // multicast
        "240.0.0.0/4",      // reserved, includes the limited broadcast 255.255.255.255
        "::/128",           // unspecified
        "::1/128",          // loopback
        "64:ff9b:1::/48",   // local-use NAT64, RFC 8215: translates to whatever the local network chose
        "fc00::/7",         // unique local
        "fe80::/10",        // link-local
        "fec0::/10",        // site-local (deprecated)
        "ff00::/8",         // multicast
    ].map { CIDR($0)! }

    /// For a permission (CreatePermission): the IP alone. One of this host's addresses passes here,
    /// since relaying to another allocation on this server needs a permission for it; what is sent to it
    /// is judged with its port by `permits(_: TransportAddress)`.
    public func permits(_ ip: IPAddress) -> Bool {
        verdict(ip) != .denied
    }

    /// For data sent to a peer, a channel binding or an RFC 6062 Connect: the IP and the port.
    public func permits(_ peer: TransportAddress) -> Bool {
        switch verdict(peer.ip) {
        case .permitted: return true
        case .denied: return false
        case .hostAddress: return relayPorts.contains(peer.port)
        }
    }

    enum Verdict { case permitted, hostAddress, denied }

    func verdict(_ ip: IPAddress) -> Verdict {
        let candidates = Self.candidates(ip)
        if candidates.contains(where: { c in allow.contains { $0.contains(c) } }) { return .permitted }
        for c in candidates {
            if deny.contains(where: { $0.contains(c) }) || Self.builtInDenied.contains(where: { $0.contains(c) }) {
                return .denied
            }
        }
        return candidates.contains(where: hostAddresses.contains) ? .hostAddress : .permitted
    }

    /// `ip` and the IPv4 addresses it carries.
    static func candidates(_ ip: IPAddress) -> [IPAddress] {
        guard ip.isIPv6 else { return [ip] }
        var out = [ip]
        if let v4 = ip.embeddedIPv4 { out.append(v4) }
        if nat64.contains(ip) { out.append(IPAddress(ipv4: UInt32(truncatingIfNeeded: ip.low))) }
        if sixToFour.contains(ip) { out.append(IPAddress(ipv4: UInt32(truncatingIfNeeded: ip.high >> 16))) }
        if teredo.contains(ip) {
            // RFC 4380 §4: the server's IPv4 address in bits 32-63, the client's, inverted, in the last 32.
            out.append(IPAddress(ipv4: UInt32(truncatingIfNeeded: ip.high)))
            out.append(IPAddress(ipv4: ~UInt32(truncatingIfNeeded: ip.low)))
        }
        return out
    }

    static let nat64 = CIDR("64:ff9b::/96")!
    static let sixToFour = CIDR("2002::/16")!
    static let teredo = CIDR("2001::/32")!
}
