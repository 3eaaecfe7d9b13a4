import Auth
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
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

