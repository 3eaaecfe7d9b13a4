import NIOCore

/// This host's own addresses, which the peer policy keeps peers away from (a relay must not become a way
/// into services on the server itself): every interface address, and the configured listen, relay bind
/// and external addresses (an external address may belong to a NAT in front of the host, and still leads
/// back to it). Read at start and again on every configuration reload.
enum HostAddresses {
    static func discover(_ c: TurnConfiguration, relayedIP: IPAddress, relayedIP6: IPAddress?) -> Set<IPAddress> {
        var out: Set<IPAddress> = [relayedIP]
        if let relayedIP6 { out.insert(relayedIP6) }
        if let e = c.externalAddress { out.insert(e) }
        if let e = c.externalAddress6 { out.insert(e) }
        for text in c.listenAddresses + [c.relayBindAddress, c.relayBindAddress6] {
            if let ip = IPAddress(text) { out.insert(ip) }
        }
        if let devices = try? System.enumerateDevices() {
            for d in devices {
                if let a = d.address.flatMap(TransportAddress.init) { out.insert(a.ip) }
            }
        }
        // The unspecified addresses are refused by the built-in ranges already.
        out.remove(IPAddress(ipv4: 0))
        out.remove(IPAddress("::")!)
        return out
    }
}
