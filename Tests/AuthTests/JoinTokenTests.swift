import Auth
import Foundation
@testable import JoinTokens
import JWTKit
import Synchronization
import Testing

/// JWTJoinTokens in memory: tokens signed with jwt-kit's own signer, a clock the test moves.
@Suite struct JoinTokenTests {
    static let key = "a-join-token-key-of-32-bytes-at-least"
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// The verifier's own claims type signs the tests' tokens.
    typealias Claims = JoinClaims

    final class Clock: Sendable {
        let now = Mutex(JoinTokenTests.start)
        func advance(_ s: TimeInterval) { now.withLock { $0 += s } }
    }

    static func claims(room: String = "r", expiresIn: TimeInterval = 60) -> Claims {
        Claims(sub: .init(value: "alice"), room: room, exp: .init(value: start.addingTimeInterval(expiresIn)))
    }

    static func sign(_ claims: Claims, key: String = key, kid: String? = "k1") async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: key), digestAlgorithm: .sha256, kid: kid.map { JWKIdentifier(string: $0) })
        return try await keys.sign(claims, kid: kid.map { JWKIdentifier(string: $0) })
    }

    static func verifier(keys: [String: String] = ["k1": key], clock: Clock, leeway: TimeInterval = 10) async throws -> JWTJoinTokens {
        try await JWTJoinTokens(.init(hmacKeys: keys, leeway: leeway), now: { clock.now.withLock { $0 } })
    }

    @Test func aValidTokenGrantsItsClaims() async throws {
        let clock = Clock()
        let tokens = try await Self.verifier(clock: clock)
        var c = Self.claims()
        c.name = "Alice"
        c.metadata = .object(["seat": .number(3)])
        c.permissions = .init(broadcast: false)
        let grant = try tokens.verify(await Self.sign(c), room: "r").get()
        #expect(grant == JoinGrant(username: "alice", name: "Alice", metadataJSON: #"{"seat":3}"#, mayBroadcast: false, mayUseTurn: true))
    }

    @Test func timeClaimsHaveTheLeewayAndNoMore() async throws {
        let clock = Clock()
        let tokens = try await Self.verifier(clock: clock, leeway: 10)
        let token = try await Self.sign(Self.claims(expiresIn: 60))
        clock.advance(65)
        #expect(tokens.verify(token, room: "r").map(\.username) == .success("alice"))
        clock.advance(10)
        #expect(tokens.verify(token, room: "r") == .failure(.expired))
        var early = Self.claims(expiresIn: 600)
        early.nbf = .init(value: clock.now.withLock { $0 }.addingTimeInterval(30))
        #expect(tokens.verify(try await Self.sign(early), room: "r") == .failure(.notYetValid))
        clock.advance(25)
        #expect(tokens.verify(try await Self.sign(early), room: "r").map(\.username) == .success("alice"))
    }

    @Test func wrongRoomWrongKeyAndReuseAreRefused() async throws {
        let clock = Clock()
        let tokens = try await Self.verifier(clock: clock)
        #expect(tokens.verify(try await Self.sign(Self.claims(room: "other")), room: "r") == .failure(.wrongRoom))
        #expect(tokens.verify(try await Self.sign(Self.claims(), key: "another-key-that-is-32-bytes-long!!"), room: "r")
                == .failure(.signature))
        #expect(tokens.verify("a.b", room: "r") == .failure(.malformed))
        var once = Self.claims()
        once.jti = .init(value: "j1")
        let token = try await Self.sign(once)
        #expect(tokens.verify(token, room: "r").map(\.username) == .success("alice"))
        #expect(tokens.verify(token, room: "r") == .failure(.reused))
    }

    @Test func aTokenWithoutKidMatchesAnyKeyAndKeysRotateByUpdate() async throws {
        let clock = Clock()
        let second = "the-second-key-also-32-bytes-long!!"
        let tokens = try await Self.verifier(keys: ["k1": Self.key, "k2": second], clock: clock)
        #expect(tokens.verify(try await Self.sign(Self.claims(), key: second, kid: nil), room: "r").map(\.username) == .success("alice"))
        try await tokens.update(.init(hmacKeys: ["k2": second]))
        #expect(tokens.verify(try await Self.sign(Self.claims()), room: "r") == .failure(.signature))
        #expect(tokens.verify(try await Self.sign(Self.claims(), key: second, kid: "k2"), room: "r").map(\.username) == .success("alice"))
        var off = JWTJoinTokens.Settings(hmacKeys: ["k2": second])
        off.accepted = false
        try await tokens.update(off)
        #expect(tokens.verify(try await Self.sign(Self.claims(), key: second, kid: "k2"), room: "r") == .failure(.notAccepted))
    }
}
