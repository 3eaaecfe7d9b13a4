import Auth
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import NIOPosix
import StunTurn
@testable import Signaling

/// A real SignalingServer on 127.0.0.1 with an ephemeral port for one test.
func withSignaling(
    users: [String: String] = ["alice": "pw", "bob": "pw", "carol": "pw"],
    credentials: CredentialStore? = nil,
    hooks: [any SignalingHooks] = [],
    configure: (inout SignalingConfiguration) -> Void = { _ in },
    _ body: (SignalingServer, Int) async throws -> Void
) async throws {
    var c = SignalingConfiguration()
    c.listenAddress = "127.0.0.1"
    c.port = 0
    c.keepaliveInterval = .zero
    c.apiToken = "test-token"
    configure(&c)
    var logger = Logger(label: "signaling-test")
    logger.logLevel = .critical
    let store = credentials ?? CredentialStore(.init(users: users))
    let hub = SignalingHub(configuration: c, credentials: store, hooks: hooks, logger: logger)
    let server = SignalingServer(hub: hub, logger: logger)
    let task = Task { try await server.run() }
    let port = await server.listeningPort()
    do {
        try await body(server, port)
    } catch {
        task.cancel()
        _ = await task.result
        throw error
    }
    task.cancel()
    _ = await task.result
}


/// Both halves in one process sharing one credential store, as the executable composes them: a session's
/// TURN credentials work while it lasts, and its allocations go with it.
func withSignalingAndTurn(
    configure: (inout SignalingConfiguration) -> Void = { _ in },
    configureTurn: (inout TurnConfiguration) -> Void = { _ in },
    _ body: (SignalingServer, Int, TurnServer, UInt16) async throws -> Void
) async throws {
    let credentials = CredentialStore(.init(users: ["alice": "pw", "bob": "pw"]))
    var c = TurnConfiguration()
    c.listenAddresses = ["127.0.0.1"]
    c.port = 0
    c.threads = 1
    c.relayPorts = 26000...26999
    configureTurn(&c)
    var logger = Logger(label: "both-halves-test")
    logger.logLevel = .critical
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let turn = TurnServer(configuration: c, credentials: credentials, group: group, logger: logger)
    turn.releaseAllocationsWhenRevoked(credentials.sessions)
    let turnPort = UInt16(try await turn.start().udp[0].port!)
    do {
        try await withSignaling(credentials: credentials, configure: configure) { server, port in
            server.hub.iceServers.stunPort = Int(turnPort)
            try await body(server, port, turn, turnPort)
        }
    } catch {
        await turn.stop()
        try await group.shutdownGracefully()
        throw error
    }
    await turn.stop()
    try await group.shutdownGracefully()
}
