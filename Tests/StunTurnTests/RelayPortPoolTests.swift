import Testing
import TurnTestSupport
@testable import StunTurn
#if canImport(Glibc)
import Glibc
#endif

@Suite struct RelayPortPoolTests {
    @Test func handsOutEveryPortOnceThenIsExhausted() {
        let pool = RelayPortPool(range: 50000...50009)
        var seen = Set<UInt16>()
        for _ in 0..<10 {
            let p = pool.acquire()
            #expect(p != nil)
            #expect(seen.insert(p!.port).inserted)
        }
        #expect(pool.acquire() == nil)
        pool.release(50003)
        #expect(pool.acquire()?.port == 50003)
        #expect(pool.acquire() == nil)
    }

    @Test func evenPortWithReservationHoldsTheNextPortForItsToken() {
        let pool = RelayPortPool(range: 50000...50003)
        let first = pool.acquire(even: true, reserveNext: true)!
        #expect(first.port % 2 == 0)
        #expect(first.token != nil)
        #expect(pool.inUseCount == 2)
        #expect(pool.redeem(token: first.token!) == first.port + 1)
        #expect(pool.redeem(token: first.token!) == nil)
        #expect(pool.redeem(token: 12345) == nil)
    }

    @Test func reservationsExpireAfterThirtySeconds() {
        let clock = ManualClock()
        let pool = RelayPortPool(range: 50000...50001, clock: { clock.seconds })
        let r = pool.acquire(even: true, reserveNext: true)!
        pool.release(r.port)
        clock.seconds += 31
        #expect(pool.redeem(token: r.token!) == nil)
        #expect(pool.inUseCount == 0)
    }

    @Test func aHeldReservationKeepsItsPortBoundUntilItExpires() throws {
        let clock = ManualClock()
        let pool = RelayPortPool(range: 27300...27301, clock: { clock.seconds })
        let r = try #require(pool.acquire(even: true, reserveNext: true))
        let token = try #require(r.token)
        #expect(ReservedPortSocket.hold(token, in: pool, host: "127.0.0.1"))
        #expect(UDPTestSocket(ip: "127.0.0.1", port: 27301).port != 27301)
        // A second hold of the same port fails: the first socket has it.
        #expect(!ReservedPortSocket.hold(token, in: pool, host: "127.0.0.1"))
        clock.seconds += 31
        pool.expireReservations()
        #expect(pool.reservationCount == 0)
        #expect(UDPTestSocket(ip: "127.0.0.1", port: 27301).port == 27301)
    }

    @Test func aRedeemedReservationHandsItsSocketOver() throws {
        let pool = RelayPortPool(range: 27310...27311)
        let r = try #require(pool.acquire(even: true, reserveNext: true))
        #expect(ReservedPortSocket.hold(r.token!, in: pool, host: "127.0.0.1"))
        let redeemed = try #require(pool.redeemReservation(token: r.token!))
        let fd = try #require(redeemed.socket)
        #expect(redeemed.port == 27311)
        #expect(UDPTestSocket(ip: "127.0.0.1", port: 27311).port != 27311)  // still bound: the caller owns it
        close(fd)
        #expect(UDPTestSocket(ip: "127.0.0.1", port: 27311).port == 27311)
    }

    @Test func excludedPortsAreSkipped() {
        let pool = RelayPortPool(range: 50000...50002)
        #expect(pool.acquire(excluding: [50000, 50001])?.port == 50002)
        #expect(pool.acquire(excluding: [50000, 50001]) == nil)
    }
}

final class ManualClock: @unchecked Sendable {
    var seconds: Int64 = 1000
}
