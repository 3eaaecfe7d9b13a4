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
