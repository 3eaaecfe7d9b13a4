import Testing
@testable import StunTurn

@Suite struct NonceManagerTests {
    let client = IPAddress("203.0.113.5")!

    @Test func freshNonceIsValidAndCarriesTheSecurityFeatureCookie() {
        let clock = ManualClock()
        let nonces = NonceManager(secret: [1, 2, 3], lifetime: 600, clock: { Int(clock.seconds) })
        let n = nonces.make(for: client)
        #expect(n.hasPrefix("obMatJos2"))
        #expect(n.utf8.count < 128)
        #expect(nonces.check(n, for: client) == .valid)
    }

    @Test func nonceGoesStaleAfterItsLifetime() {
        let clock = ManualClock()
        let nonces = NonceManager(secret: [1, 2, 3], lifetime: 600, clock: { Int(clock.seconds) })
        let n = nonces.make(for: client)
        clock.seconds += 600
        #expect(nonces.check(n, for: client) == .valid)
        clock.seconds += 1
        #expect(nonces.check(n, for: client) == .stale)
    }

    @Test func nonceFromAnotherAddressOrSecretOrTamperedIsStale() {
        let clock = ManualClock()
        let nonces = NonceManager(secret: [1, 2, 3], lifetime: 600, clock: { Int(clock.seconds) })
        let other = NonceManager(secret: [9], lifetime: 600, clock: { Int(clock.seconds) })
        let n = nonces.make(for: client)
        #expect(nonces.check(n, for: IPAddress("203.0.113.6")!) == .stale)
        #expect(other.check(n, for: client) == .stale)
        #expect(nonces.check(String(n.dropLast()) + (n.last == "0" ? "1" : "0"), for: client) == .stale)
        #expect(nonces.check("garbage", for: client) == .stale)
    }
}
