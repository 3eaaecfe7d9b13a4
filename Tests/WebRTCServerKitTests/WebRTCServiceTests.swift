import Foundation
import Logging
import SignalingTestSupport
import Synchronization
import Testing
import WebRTCServerKit

/// The server as a library: settings in code, a plugged-in lookup and hook, reload.
@Suite struct WebRTCServiceTests {
    final class Joins: SignalingHooks {
        let seen = Mailbox<RoomEvent>()
        func peerJoined(_ event: RoomEvent) async throws { seen.put(event) }
        func peerLeft(_ event: RoomEvent) async throws {}
    }

    static var quiet: Logger {
        var l = Logger(label: "kit-test")
        l.logLevel = .critical
        return l
    }

    static let loopback = ["turn.listen": "127.0.0.1", "turn.port": "0", "turn.tls_port": "0", "signaling.listen": "127.0.0.1",
                           "signaling.port": "0", "shutdown.grace_period": "0"]

    @Test func settingsInCodeAreCheckedLikeTheCommandLine() throws {
        #expect(throws: ConfigError.self) { try ServerSettings(["turn.nope": "1"]) }
        #expect(throws: ConfigError.self) { try ServerSettings(["turn.port": "seventy"]) }
        #expect(throws: ConfigError.self) { try ServerSettings(["auth.jwt_keys": "k1=short"]) }
        // Tokens only, with nothing to verify them: nobody could log in.
        #expect(throws: ConfigError.self) { try ServerSettings(["auth.methods": "token"]) }
        #expect(throws: ConfigError.self) { try ServerSettings(["auth.methods": "password,magic"]) }
        _ = try ServerSettings(Self.loopback)
    }

    @Test func aPluggedInLookupLogsInAndTheHookSeesTheJoinThenAReloadAddsAUser() async throws {
        let hook = Joins()
        let lookup = LookupFunction { name, _ in name == "app-user" ? .found([.password("app-pw")]) : .unknown }
        let server = try await WebRTCService(settings: try ServerSettings(Self.loopback),
                                             plugins: ServerPlugins(lookups: [.init(name: "app", lookup)], hooks: [hook]),
                                             logger: Self.quiet)
        let running = Task { try await server.run() }
        defer { running.cancel() }
        let port = await server.signalingPort()

        let peer = WSTestPeer.connect(port: port, room: "kit")
        peer.authenticate("app-user", "app-pw")
        let answer = try await peer.nextJSON()
        #expect(answer["event"] as? String == "authenticated")
        let joined = await hook.seen.take()
        #expect(joined?.peer.username == "app-user" && joined?.room == "kit")

        let stranger = WSTestPeer.connect(port: port, room: "kit")
        stranger.authenticate("static-user", "pw")
        #expect(try await stranger.nextJSON()["event"] as? String == "unauthorized")

        // Settings made in code are applied by reload(to:); the plugged lookup stays, the demo login stays off.
        server.reload(to: try ServerSettings(Self.loopback.merging(["auth.users": "static-user=pw"]) { $1 }))
        let later = WSTestPeer.connect(port: port, room: "kit")
        later.authenticate("static-user", "pw")
        #expect(try await later.nextJSON()["event"] as? String == "authenticated")
        let again = WSTestPeer.connect(port: port, room: "kit")
        again.authenticate("demo", "")
        #expect(try await again.nextJSON()["event"] as? String == "unauthorized")
        for p in [peer, stranger, later, again] { p.close() }
    }
}
