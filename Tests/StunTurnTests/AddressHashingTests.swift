import Testing
@testable import StunTurn

/// Addresses and five-tuples hash fewer words than their fields (the relay path hashes them per packet):
/// equal values must still hash alike, and values that share those words must stay distinct keys.
@Suite struct AddressHashingTests {
    let v4 = IPAddress("192.0.2.1")!
    /// The IPv4-compatible form has the same low word as `v4` and a zero high word.
    let v4Compatible = IPAddress("::192.0.2.1")!
    let v6 = IPAddress("2001:db8::1")!

    @Test func equalAddressesHashAlikeAndLookalikesStayDistinctKeys() {
        #expect(IPAddress("192.0.2.1")!.hashValue == v4.hashValue)
        #expect(IPAddress("2001:db8:0::1")!.hashValue == v6.hashValue)
        #expect(v4 != v4Compatible)
        var table: [IPAddress: Int] = [v4: 1, v4Compatible: 2, v6: 3]
        #expect(table[v4] == 1 && table[v4Compatible] == 2 && table[v6] == 3)
        table[IPAddress("192.0.2.1")!] = 4
        #expect(table.count == 3 && table[v4] == 4)
    }

    @Test func transportAddressesDifferingOnlyInPortOrFamilyAreDistinctKeys() {
        let a = TransportAddress(ip: v4, port: 1000)
        let keys = [a, TransportAddress(ip: v4, port: 1001), TransportAddress(ip: v4Compatible, port: 1000),
                    TransportAddress(ip: v6, port: 1000), TransportAddress(ip: v6, port: 1001)]
        let table = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        #expect(table.count == 5)
        for (i, k) in keys.enumerated() { #expect(table[k] == i) }
        #expect(TransportAddress(ip: IPAddress("192.0.2.1")!, port: 1000).hashValue == a.hashValue)
    }

    @Test func fiveTuplesDifferingInAnyPartAreDistinctKeys() {
        let client = TransportAddress(ip: v4, port: 5000)
        let server = TransportAddress(ip: IPAddress("198.51.100.1")!, port: 3478)
        let otherServerIP = TransportAddress(ip: IPAddress("198.51.100.2")!, port: 3478)
        let tuples = [FiveTuple(client: client, server: server, transport: .udp),
                      FiveTuple(client: client, server: server, transport: .tcp),
                      FiveTuple(client: client, server: otherServerIP, transport: .udp),
                      FiveTuple(client: client, server: TransportAddress(ip: server.ip, port: 5349), transport: .tls),
                      FiveTuple(client: TransportAddress(ip: v6, port: 5000), server: server, transport: .udp)]
        let table = Dictionary(uniqueKeysWithValues: tuples.enumerated().map { ($1, $0) })
        #expect(table.count == 5)
        for (i, t) in tuples.enumerated() { #expect(table[t] == i) }
    }
}
