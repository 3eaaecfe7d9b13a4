import Auth
import Logging
import NIOCore
import NIOPosix
@testable import StunTurn

/// A real TurnServer on 127.0.0.1 with an ephemeral port, for the duration of one test.
func withTurnServer(
    users: [String: String] = ["alice": "wonder", "bob": "builder"],
    secrets: [String] = [],
    configure: (inout TurnConfiguration) -> Void = { _ in },
    _ body: (TurnServer, UInt16) async throws -> Void
) async throws {
    var c = TurnConfiguration()
    c.listenAddresses = ["127.0.0.1"]
    c.port = 0
    c.threads = 1
    c.realm = "test.realm"
    c.relayPorts = 22000...24999
    configure(&c)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let server = TurnServer(configuration: c, credentials: CredentialStore(.init(users: users, sharedSecrets: secrets)),
                            group: group, logger: logger)
    let bound = try await server.start()
    do {
        try await body(server, UInt16(bound.udp[0].port!))
    } catch {
        await server.stop()
        try await group.shutdownGracefully()
        throw error
    }
    await server.stop()
    try await group.shutdownGracefully()
}

extension TurnConfiguration {
    mutating func allowLoopbackPeers() {
        peerPolicy = PeerAddressPolicy(allow: [CIDR("127.0.0.0/8")!])
    }
}
