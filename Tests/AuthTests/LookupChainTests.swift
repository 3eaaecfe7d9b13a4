import Auth
import Foundation
import Synchronization
import Testing

@Suite struct LookupChainTests {
    final class Box<T: Sendable>: Sendable {
        let value: Mutex<T>
        init(_ v: T) { value = Mutex(v) }
        func withLock<R>(_ body: (inout T) -> R) -> R { value.withLock { body(&$0) } }
    }

    final class Clock: Sendable {
        let now = Mutex<TimeInterval>(1000)
        func advance(_ s: TimeInterval) { now.withLock { $0 += s } }
    }

    @Test func answersAreCachedForTheTTLFoundAndUnknownAlike() async {
        let calls = Box(0)
        let users = Box(["dave": "pw"])
        let clock = Clock()
        var settings = LookupChain.Settings()
        settings.cacheTTL = 30
        let chain = LookupChain([.init(name: "t", LookupFunction { u, _ in
            calls.withLock { $0 += 1 }
            return users.withLock { $0[u] }.map { .password($0) } ?? .unknown
        })], settings: settings, clock: { clock.now.withLock { $0 } })
        #expect(await chain.resolve(username: "dave", realm: "r") == .success(.password("pw")))
        #expect(await chain.resolve(username: "erin", realm: "r") == .success(.unknown))
        users.withLock { $0 = ["erin": "pw2"] }  // dave removed, erin added
        #expect(chain.cached(username: "dave", realm: "r") == .password("pw"))
        #expect(chain.cached(username: "erin", realm: "r") == .unknown)
        #expect(calls.withLock { $0 } == 2)
        clock.advance(31)
        #expect(chain.cached(username: "dave", realm: "r") == nil)
        #expect(await chain.resolve(username: "dave", realm: "r") == .success(.unknown))
        #expect(await chain.resolve(username: "erin", realm: "r") == .success(.password("pw2")))
    }

    @Test func theFirstLinkThatKnowsTheUserAnswers() async {
        let chain = LookupChain([
            .init(name: "a", LookupFunction { u, _ in u == "x" ? .password("from-a") : .unknown }),
            .init(name: "b", LookupFunction { u, _ in u == "x" || u == "y" ? .password("from-b") : .unknown }),
        ])
        #expect(await chain.resolve(username: "x", realm: "r") == .success(.password("from-a")))
        #expect(await chain.resolve(username: "y", realm: "r") == .success(.password("from-b")))
        #expect(await chain.resolve(username: "z", realm: "r") == .success(.unknown))
    }

    @Test func aThrowIsAFailureATimeoutTooAndNeitherIsCached() async {
        struct Down: Error {}
        var settings = LookupChain.Settings()
        settings.timeout = 0.2
        let chain = LookupChain([.init(name: "t", LookupFunction { u, _ in
            if u == "slow" { try await Task.sleep(for: .seconds(30)) }
            throw Down()
        })], settings: settings)
        #expect(await chain.resolve(username: "any", realm: "r") == .failure(.failed))
        #expect(await chain.resolve(username: "slow", realm: "r") == .failure(.timedOut))
        #expect(chain.cached(username: "any", realm: "r") == nil)
        #expect(chain.outcomes.value(.failed) == 1)
        #expect(chain.outcomes.value(.timedOut) == 1)
    }

    @Test func concurrentRequestsForOneNameShareOneLookupAndTheInFlightBoundRefusesTheRest() async {
        let calls = Box(0)
        let gate = AsyncStream<Void>.makeStream()
        var settings = LookupChain.Settings()
        settings.maxInFlight = 1
        let chain = LookupChain([.init(name: "t", LookupFunction { _, _ in
            calls.withLock { $0 += 1 }
            for await _ in gate.stream { break }
            return .password("pw")
        })], settings: settings)
        async let first = chain.resolve(username: "a", realm: "r")
        async let second = chain.resolve(username: "a", realm: "r")
        while chain.inFlightCount == 0 { await Task.yield() }
        // Another name while the one slot is taken: refused at once.
        #expect(await chain.resolve(username: "b", realm: "r") == .failure(.overloaded))
        gate.continuation.yield()
        gate.continuation.finish()
        #expect(await first == .success(.password("pw")))
        #expect(await second == .success(.password("pw")))
        #expect(calls.withLock { $0 } == 1)
    }

    @Test func aStoredLongTermKeyVerifiesASignalingPasswordInItsRealm() async {
        let key = StoredSecret.md5Key(username: "frank", realm: "example.org", password: "open sesame")
        let chain = LookupChain([.init(name: "t", LookupFunction { u, _ in u == "frank" ? .found([.longTermKey(key)]) : .unknown })])
        let store = CredentialStore(.init(realm: "example.org"), lookups: chain)
        #expect(store.check(username: "frank", password: "open sesame") == .lookupNeeded)
        #expect(await store.verifyLookingUp(username: "frank", password: "open sesame") == .accepted)
        #expect(await store.verifyLookingUp(username: "frank", password: "open") == .refused)
        #expect(store.check(username: "frank", password: "open sesame") == .accepted, "from the cache now")
        #expect(StoredSecret.longTermKey(hex: key.map { String(format: "%02x", $0) }.joined()) == .longTermKey(key))
        #expect(StoredSecret.longTermKey(hex: "zz") == nil)
    }
}
