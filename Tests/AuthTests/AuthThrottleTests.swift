import Auth
import Synchronization
import Testing

@Suite struct AuthThrottleTests {
    /// A clock the test moves by hand.
    final class Clock: Sendable {
        let now = Mutex<Double>(1_000)
        func advance(_ s: Double) { now.withLock { $0 += s } }
        var read: @Sendable () -> Double { { self.now.withLock { $0 } } }
    }

    static let a = SourceKey(addressBytes: [192, 0, 2, 1])!
    static let b = SourceKey(addressBytes: [192, 0, 2, 2])!

    func throttle(_ clock: Clock, free: Int = 2, blockAfter: Int = 5) -> AuthThrottle {
        var s = AuthThrottle.Settings()
        s.freeFailures = free
        s.baseDelay = 0.5
        s.maxDelay = 2
        s.blockAfter = blockAfter
        s.blockDuration = 60
        s.window = 300
        return AuthThrottle(s, clock: clock.read)
    }

    @Test func freeFailuresThenADoublingDelayUpToTheCap() {
        let t = throttle(Clock(), blockAfter: 0)
        #expect((1...7).map { _ in t.recordFailure(Self.a) } == [0, 0, 0.5, 1, 2, 2, 2])
        #expect(t.check(Self.a) == .allowed)
    }

    @Test func blockedAfterRepeatedFailuresForTheBlockDurationOnly() {
        let clock = Clock()
        let t = throttle(clock)
        for _ in 1...4 { t.recordFailure(Self.a) }
        #expect(t.check(Self.a) == .allowed)
        t.recordFailure(Self.a)
        #expect(t.check(Self.a) == .blocked(retryAfter: 60))
        #expect(t.check(Self.b) == .allowed, "another source is unaffected")
        clock.advance(61)
        #expect(t.check(Self.a) == .allowed)
        #expect(t.blocked == 1)
    }

    @Test func failuresAreForgottenAfterTheWindow() {
        let clock = Clock()
        let t = throttle(clock)
        for _ in 1...4 { t.recordFailure(Self.a) }
        clock.advance(301)
        #expect(t.recordFailure(Self.a) == 0, "counting starts again")
        t.sweep()
        #expect(t.trackedSources == 1)
        clock.advance(301)
        t.sweep()
        #expect(t.trackedSources == 0)
    }

    @Test func offNeverDelaysNorBlocks() {
        let t = AuthThrottle(.off)
        for _ in 1...100 { #expect(t.recordFailure(Self.a) == 0) }
        #expect(t.check(Self.a) == .allowed)
    }

    @Test func trackedSourcesStayBoundedUnderASpreadOutAttack() {
        var s = AuthThrottle.Settings()
        s.maxSources = 100
        let t = AuthThrottle(s)
        for i in 0..<1000 { t.recordFailure(SourceKey(addressBytes: [10, 0, UInt8(i >> 8), UInt8(i & 0xFF)])!) }
        #expect(t.trackedSources <= 100)
    }

    @Test func ipv6SourcesAreCountedPerSlash64AndMappedIPv4AsIPv4() {
        let one = SourceKey(addressBytes: [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2] + [UInt8](repeating: 0, count: 7) + [1])!
        let sameNetwork = SourceKey(addressBytes: [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2] + [UInt8](repeating: 0xAB, count: 8))!
        let otherNetwork = SourceKey(addressBytes: [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 3] + [UInt8](repeating: 0, count: 8))!
        #expect(one == sameNetwork)
        #expect(one != otherNetwork)
        #expect(one.description == "2001:db8:1:2::/64")
        let mapped = SourceKey(addressBytes: [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 192, 0, 2, 1])!
        #expect(mapped == Self.a)
        #expect(Self.a.description == "192.0.2.1")
        #expect(SourceKey(addressBytes: [1, 2, 3]) == nil)
    }
}
