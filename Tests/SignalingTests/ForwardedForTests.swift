import Testing
@testable import Signaling

/// The client's address behind trusted reverse proxies (X-Forwarded-For).
@Suite struct ForwardedForTests {
    let proxy: [UInt8] = [127, 0, 0, 1]
    let browser: [UInt8] = [203, 0, 113, 7]
    /// 127.0.0.0/8 and 10.0.0.0/8 are "our" proxies here.
    let trusted: ([UInt8]) -> Bool = { $0.count == 4 && ($0[0] == 127 || $0[0] == 10) }

    @Test func theHeaderIsIgnoredUnlessThePeerIsATrustedProxy() {
        #expect(ForwardedFor.client(peer: browser, values: ["198.51.100.1"], trusted: trusted) == browser)
        #expect(ForwardedFor.client(peer: proxy, values: ["198.51.100.1"], trusted: { _ in false }) == proxy)
    }

    @Test func theRightmostUntrustedHopIsTheClient() {
        // nginx appends the address it got the request from; what the client put in front is not believed.
        #expect(ForwardedFor.client(peer: proxy, values: ["6.6.6.6, 203.0.113.7"], trusted: trusted) == browser)
        // Two proxies of ours in a row (10.1.2.3 passed it to 127.0.0.1), over two header lines.
        #expect(ForwardedFor.client(peer: proxy, values: ["6.6.6.6, 203.0.113.7", " 10.1.2.3 "], trusted: trusted) == browser)
    }

    @Test func whenEveryHopIsTrustedTheFirstOneIsTheClient() {
        #expect(ForwardedFor.client(peer: proxy, values: ["10.9.9.9,10.1.2.3"], trusted: trusted) == [10, 9, 9, 9])
    }

    @Test func noHeaderOrAnUnreadableHopLeavesTheLastAddressKnown() {
        #expect(ForwardedFor.client(peer: proxy, values: [], trusted: trusted) == proxy)
        #expect(ForwardedFor.client(peer: proxy, values: ["unknown"], trusted: trusted) == proxy)
        #expect(ForwardedFor.client(peer: proxy, values: ["203.0.113.7, garbage, 10.1.2.3"], trusted: trusted) == [10, 1, 2, 3])
    }

    @Test func ipv6HopsWithOrWithoutBrackets() {
        let v6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
        #expect(ForwardedFor.client(peer: proxy, values: ["2001:db8::1"], trusted: trusted) == v6)
        #expect(ForwardedFor.client(peer: proxy, values: ["[2001:db8::1]"], trusted: trusted) == v6)
    }
}
