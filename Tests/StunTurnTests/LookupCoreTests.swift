import Auth
import NIOCore
import Synchronization
import Testing
@testable import StunTurn

/// TURN with a password lookup that only answers when asked off the loop (`TurnAction.lookUpCredentials`):
/// the request waits, others go on, and the answer decides it.
@Suite struct LookupCoreTests {
    typealias H = CoreHarness

    /// carol/secret kept as coturn keeps it: MD5(carol:test.realm:secret).
    final class Calls: Sendable {
        let count = Mutex(0)
        var value: Int { count.withLock { $0 } }
    }

    static func carolLookup(calls: Calls? = nil, fail: Bool = false) -> LookupChain {
        LookupChain([.init(name: "test", LookupFunction { user, realm in
            calls?.count.withLock { $0 += 1 }
            if fail { throw LookupSetupError() }
            guard user == "carol" else { return .unknown }
            return .found([.longTermKey(StoredSecret.md5Key(username: user, realm: realm, password: "secret"))])
        })])
    }

    struct LookupSetupError: Error {}

    @Test func anAllocateWaitsForTheLookupWhileOtherTrafficIsAnsweredThenSucceedsWithTheStoredKey() async throws {
        let calls = Calls()
        let h = CoreHarness(lookups: Self.carolLookup(calls: calls))
        h.username = "carol"
        h.password = "secret"
        let waiting = H.allocateRequest()
        h.shell.receive(h.signed(waiting), from: H.clientAddress, on: h.listener)
        #expect(h.answer(to: waiting.transactionID) == nil, "not answered before the lookup")
        #expect(h.shell.pendingLookups.map { $0.username } == ["carol"])
        // Meanwhile alice (a static user) is answered at once.
        let other = TransportAddress(ip: IPAddress("198.51.100.8")!, port: 40_001)
        h.username = "alice"
        h.password = "wonder"
        #expect(h.send(H.allocateRequest(), from: other)?.messageClass == StunClass.successResponse)
        await h.shell.completeLookups()
        let r = try #require(h.answer(to: waiting.transactionID))
        #expect(r.messageClass == StunClass.successResponse)
        #expect(calls.value == 1)
        #expect(h.stats.authLookupsWaited.value == 1)
        // A second allocation by carol (another client) is answered from the cache, without waiting.
        h.username = "carol"
        h.password = "secret"
        let third = TransportAddress(ip: IPAddress("198.51.100.9")!, port: 40_002)
        let r3 = h.send(H.allocateRequest(), from: third)
        #expect(r3?.messageClass == StunClass.successResponse, "\(String(describing: r3?.code))")
        #expect(calls.value == 1)
    }

    @Test func aWrongPasswordForALookedUpUserIs401AndCounted() async throws {
        let h = CoreHarness(lookups: Self.carolLookup())
        h.username = "carol"
        h.password = "guess"
        let m = H.allocateRequest()
        h.shell.receive(h.signed(m), from: H.clientAddress, on: h.listener)
        await h.shell.completeLookups()
        #expect(h.answer(to: m.transactionID)?.code == 401)
        #expect(h.stats.authFailures.value == 1)
    }

    @Test func aLookupThatThrowsIs401ButNotCountedAgainstTheSource() async throws {
        let h = CoreHarness(lookups: Self.carolLookup(fail: true))
        h.username = "carol"
        h.password = "secret"
        let m = H.allocateRequest()
        h.shell.receive(h.signed(m), from: H.clientAddress, on: h.listener)
        await h.shell.completeLookups()
        let r = try #require(h.answer(to: m.transactionID))
        #expect(r.code == 401)
        #expect(r.nonce != nil, "a fresh challenge")
        #expect(h.stats.authFailures.value == 0)
        #expect(h.shared.credentials.lookups?.outcomes.value(.failed) == 1)
    }
}
