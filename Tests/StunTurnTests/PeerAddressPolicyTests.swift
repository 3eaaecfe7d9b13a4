import Testing
@testable import StunTurn

@Suite struct PeerAddressPolicyTests {
    let strict = PeerAddressPolicy()

    @Test(arguments: [
        "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254", "127.0.0.1",
        "127.255.0.9", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.168.1.1", "224.0.0.1",
        "239.255.255.250", "255.255.255.255", "240.0.0.1",
        "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:192.168.0.1", "::ffff:169.254.1.1", "::127.0.0.1",
        "::10.0.0.1", "64:ff9b::7f00:1",
        // Found by the adversarial review (issue 24): more ranges and more ways to carry an internal IPv4.
        "198.18.0.1", "198.19.255.254", "192.0.0.8", "::ffff:0:127.0.0.1", "::ffff:0:10.0.0.1",
        "2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::5", "64:ff9b:1::a00:1", "64:ff9b:1:ffff::1",
        "2001:0:7f00:1::1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    ])
    func builtInRangesAreDeniedByDefault(_ text: String) {
        #expect(!strict.permits(IPAddress(text)!), "\(text) should be refused")
    }

    @Test(arguments: ["8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.0.2.1",
                      "2001:db8::1", "2606:4700::1111", "::ffff:8.8.8.8"])
    func publicAddressesArePermitted(_ text: String) {
        #expect(strict.permits(IPAddress(text)!), "\(text) should be allowed")
    }

    @Test func allowListOverridesTheBuiltInDenial() {
        let p = PeerAddressPolicy(allow: [CIDR("127.0.0.1")!])
        #expect(p.permits(IPAddress("127.0.0.1")!))
        #expect(!p.permits(IPAddress("127.0.0.2")!))
        #expect(p.permits(IPAddress("::ffff:127.0.0.1")!))
    }

    @Test func denyListRefusesPublicAddressesAndAllowStillWins() {
        let p = PeerAddressPolicy(allow: [CIDR("198.51.100.7")!], deny: [CIDR("198.51.100.0/24")!, CIDR("2001:db8::/32")!])
        #expect(!p.permits(IPAddress("198.51.100.8")!))
        #expect(p.permits(IPAddress("198.51.100.7")!))
        #expect(!p.permits(IPAddress("2001:db8:1::5")!))
        #expect(!p.permits(IPAddress("::ffff:198.51.100.9")!))
    }

    @Test func theHostsOwnAddressesAreReachableOnlyAtRelayPorts() {
        let own = IPAddress("203.0.113.7")!
        let p = PeerAddressPolicy(hostAddresses: [own], relayPorts: 49152...65535)
        // A permission is by IP: relaying to another allocation on this server needs one.
        #expect(p.permits(own))
        #expect(p.permits(TransportAddress(ip: own, port: 50000)), "another allocation's relayed address")
        for port: UInt16 in [22, 3478, 5432, 8080, 49151] {
            #expect(!p.permits(TransportAddress(ip: own, port: port)), "a service on the host itself: \(port)")
        }
        // Every form that carries the host's IPv4 address is the host.
        for text in ["::ffff:203.0.113.7", "::ffff:0:203.0.113.7", "2002:cb00:7107::1", "64:ff9b::cb00:7107"] {
            #expect(!p.permits(TransportAddress(ip: IPAddress(text)!, port: 5432)), "\(text)")
            #expect(p.permits(TransportAddress(ip: IPAddress(text)!, port: 50000)), "\(text)")
        }
        #expect(p.permits(TransportAddress(ip: IPAddress("203.0.113.8")!, port: 5432)), "a neighbour is just a peer")
        // An operator's allow entry takes the host out of the rule.
        let allowed = PeerAddressPolicy(allow: [CIDR("203.0.113.7")!], hostAddresses: [own])
        #expect(allowed.permits(TransportAddress(ip: own, port: 5432)))
    }

    @Test func listEntriesInTheIPv4MappedFormMatchThePlainIPv4Address() {
        let p = PeerAddressPolicy(deny: [CIDR("::ffff:198.51.100.9")!, CIDR("::ffff:203.0.113.0/120")!])
        #expect(!p.permits(IPAddress("198.51.100.9")!))
        #expect(!p.permits(IPAddress("::ffff:198.51.100.9")!))
        #expect(!p.permits(IPAddress("203.0.113.200")!))
        #expect(p.permits(IPAddress("198.51.100.10")!))
        #expect(CIDR("::ffff:203.0.113.0/120")!.description == "203.0.113.0/24")
        let a = PeerAddressPolicy(allow: [CIDR("::ffff:127.0.0.1")!])
        #expect(a.permits(IPAddress("127.0.0.1")!))
    }

    @Test func cidrParsingAndMatching() {
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(CIDR("fe80::/129") == nil)
        #expect(CIDR("nonsense/8") == nil)
        #expect(CIDR("10.1.2.3/8")!.description == "10.0.0.0/8")
        #expect(CIDR("::/0")!.contains(IPAddress("2001:db8::1")!))
        #expect(!CIDR("::/0")!.contains(IPAddress("1.2.3.4")!))
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("1.2.3.4")!))
    }
}
