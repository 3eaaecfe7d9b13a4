import NIOCore
import Testing
@testable import StunTurn

@Suite struct ChannelBindingTableTests {
    let peerA = TransportAddress(ip: IPAddress("198.51.100.1")!, port: 1000)
    let peerB = TransportAddress(ip: IPAddress("198.51.100.2")!, port: 2000)
    let now = NIODeadline.now()

    func bind(_ t: inout ChannelBindingTable, _ n: UInt16, _ p: TransportAddress, at: NIODeadline) -> StunError? {
        t.bind(n, to: p, socketAddress: p.socketAddress(), until: at + .seconds(600), now: at)
    }

    @Test func bindingIsFoundBothWaysAndRefreshable() {
        var t = ChannelBindingTable()
        #expect(bind(&t, 0x4000, peerA, at: now) == nil)
        #expect(t.binding(for: 0x4000, now: now)?.peer == peerA)
        #expect(t.channel(for: peerA, now: now) == 0x4000)
        #expect(bind(&t, 0x4000, peerA, at: now + .seconds(10)) == nil)
    }

    @Test func channelBoundToAnotherPeerOrPeerToAnotherChannelIs400() {
        var t = ChannelBindingTable()
        #expect(bind(&t, 0x4000, peerA, at: now) == nil)
        #expect(bind(&t, 0x4000, peerB, at: now) == .badRequest)
        #expect(bind(&t, 0x4001, peerA, at: now) == .badRequest)
        #expect(bind(&t, 0x4001, peerB, at: now) == nil)
    }

    @Test func expiredBindingCannotBeReboundDifferentlyForFiveMinutes() {
        var t = ChannelBindingTable()
        #expect(bind(&t, 0x4000, peerA, at: now) == nil)
        let later = now + .seconds(601)
        t.expire(now: later)
        #expect(t.binding(for: 0x4000, now: later) == nil)
        #expect(bind(&t, 0x4000, peerB, at: later) == .badRequest)
        #expect(bind(&t, 0x4001, peerA, at: later) == .badRequest)
        let muchLater = now + .seconds(600 + 301)
        t.expire(now: muchLater)
        #expect(bind(&t, 0x4000, peerB, at: muchLater) == nil)
    }
}
