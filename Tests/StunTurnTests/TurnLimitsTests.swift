import Auth
import NIOCore
@testable import StunTurn
import Testing

@Suite struct TurnLimitsTests {
    static let source = SourceKey(addressBytes: [192, 0, 2, 1])!
    static let other = SourceKey(addressBytes: [192, 0, 2, 2])!

    @Test func sourceRateLimiterAllowsTheBurstThenTheRate() {
        let limiter = SourceRateLimiter()
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let burst = (0..<10).filter { _ in limiter.allow(Self.source, rate: 5, burst: 4, now: t0) }.count
        #expect(burst == 4)
        #expect(limiter.allow(Self.other, rate: 5, burst: 4, now: t0), "another source has its own bucket")
        // 5/s: one more request every 200 ms.
        #expect(!limiter.allow(Self.source, rate: 5, burst: 4, now: t0 + .milliseconds(100)))
        #expect(limiter.allow(Self.source, rate: 5, burst: 4, now: t0 + .milliseconds(210)))
        #expect(limiter.allow(Self.source, rate: 0, burst: 1, now: t0), "0 = no limit")
    }

    @Test func idleSourcesAreForgottenAndTheTableIsBounded() {
        let limiter = SourceRateLimiter(maxSources: 10)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for i in 0..<50 { _ = limiter.allow(SourceKey(addressBytes: [10, 0, 0, UInt8(i)])!, rate: 1, burst: 1, now: t0) }
        #expect(limiter.count == 10)
        limiter.sweep(rate: 1, burst: 1, now: t0 + .seconds(2))
        #expect(limiter.count == 0)
    }

    @Test func bandwidthBucketHoldsOneSecondOfTheLimit() {
        var bucket = BandwidthBucket()
        let t0 = NIODeadline.uptimeNanoseconds(5_000_000_000)
        func take(_ n: Int, after ms: Int64) -> Bool { bucket.take(n, limit: 1000, now: t0 + .milliseconds(ms)) }
        let taken = [take(600, after: 0), take(400, after: 0), take(1, after: 0),
                     // Half a second later, half the limit is back; never more than one second's worth.
                     take(500, after: 500), take(100, after: 500), take(1001, after: 10_000), take(1000, after: 10_000)]
        #expect(taken == [true, true, false, true, false, false, true])
    }
}
