import Auth
import Foundation
import Logging
import NIOCore
import NIOPosix
import Signaling
import StunTurn
@testable import Cluster

/// One instance of a cluster inside the test process: hub, signaling server on a free port, cluster node,
/// and optionally a TURN server, sharing the cluster's secret.
final class TestInstance: Sendable {
    let id: String
    let hub: SignalingHub
    let server: SignalingServer
    let node: ClusterNode
    let credentials: CredentialStore
    let turn: TurnServer?
    let port: Int
    let turnPort: UInt16?
    private let tasks: [Task<Void, Error>]

    init(id: String, nats: String, group: EventLoopGroup, withTURN: Bool,
         configure: (inout SignalingConfiguration) -> Void, clusterConfigure: (inout ClusterConfiguration) -> Void,
         hooks: [any SignalingHooks]) async throws {
        self.id = id
        var logger = Logger(label: "cluster-test-\(id)")
        logger.logLevel = .critical
        credentials = CredentialStore(.init(users: ["alice": "pw", "bob": "pw", "carol": "pw", "dave": "pw"]),
                                      sessionSecret: "cluster-test-secret-0123456789")
        var c = SignalingConfiguration()
        c.listenAddress = "127.0.0.1"
        c.port = 0
        c.keepaliveInterval = .zero
        c.apiToken = "test-token"
        configure(&c)
        hub = SignalingHub(configuration: c, credentials: credentials, hooks: hooks, logger: logger)
        server = SignalingServer(hub: hub, logger: logger)
        var cc = ClusterConfiguration(nats: NATSClientConfiguration(servers: [NATSServerURL(nats)!]), instanceID: id,
                                      advert: InstanceAdvert(address: "127.0.0.1", turn: nil))
        cc.name = "test"
        cc.instanceTimeout = .seconds(2)
        cc.heartbeatInterval = .milliseconds(200)
        cc.nats.reconnectWait = .milliseconds(50)
        cc.nats.maxReconnectWait = .milliseconds(200)
        clusterConfigure(&cc)
        var tasks: [Task<Void, Error>] = []
        var turnServer: TurnServer?
        var turnPort: UInt16?
        if withTURN {
            var t = TurnConfiguration()
            t.listenAddresses = ["127.0.0.1"]
            t.port = 0
            t.threads = 1
            t.realm = "cluster.test"
            t.relayPorts = 25000...25999
            let turn = TurnServer(configuration: t, credentials: credentials, group: group, logger: logger)
            turn.releaseAllocationsWhenRevoked(credentials.sessions)
            let bound = try await turn.start()
            turnPort = UInt16(bound.udp[0].port!)
            turnServer = turn
        }
        turn = turnServer
        self.turnPort = turnPort
        let stats = turnServer?.stats
        node = ClusterNode(configuration: cc, hub: hub, credentials: credentials, eventLoop: group.next(), logger: logger,
                           load: { (stats?.allocationsActive.value ?? 0, 1000) }, onFatal: { _ in })
        if let turnPort { node.setTurnEndpoint(TurnEndpoint(host: "127.0.0.1", port: Int(turnPort), tcp: false, tlsPort: nil)) }
        let server = self.server, node = self.node
        tasks.append(Task { try await server.run() })
        tasks.append(Task { try await node.run() })
        self.tasks = tasks
        port = await server.listeningPort()
    }

    /// Stops the instance as a crash would: no goodbye, no revocations, just silence.
    func crash() async {
        await node.client.close()
        for t in tasks { t.cancel() }
        for t in tasks { _ = await t.result }
        await turn?.stop()
    }

    func stop() async {
        for t in tasks { t.cancel() }
        for t in tasks { _ = await t.result }
        await turn?.stop()
    }
}

/// Several instances and one real nats-server for one test; waits until every instance knows the others.
func withCluster(
    _ count: Int = 2,
    turnOn: Set<Int> = [],
    configure: (inout SignalingConfiguration) -> Void = { _ in },
    clusterConfigure: (inout ClusterConfiguration) -> Void = { _ in },
    hooks: (Int) -> [any SignalingHooks] = { _ in [] },
    _ body: (NATSServerProcess, [TestInstance]) async throws -> Void
) async throws {
    let nats = try NATSServerProcess()
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    var instances: [TestInstance] = []
    for i in 0..<count {
        instances.append(try await TestInstance(id: "i\(i)", nats: nats.url, group: group, withTURN: turnOn.contains(i),
                                                configure: configure, clusterConfigure: clusterConfigure, hooks: hooks(i)))
    }
    try await waitUntil("every instance knows the others") { instances.allSatisfy { $0.node.instances().count == count } }
    do {
        try await body(nats, instances)
    } catch {
        for i in instances { await i.stop() }
        try? await group.shutdownGracefully()
        throw error
    }
    for i in instances { await i.stop() }
    try? await group.shutdownGracefully()
}

struct ConditionTimeout: Error, CustomStringConvertible {
    let description: String
}

/// Polls state the servers keep (a count, a flag) until `condition` holds, for at most `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        guard ContinuousClock.now < deadline else { throw ConditionTimeout(description: "timed out waiting until \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
