import Auth
import Cluster
import Foundation
import Logging
import Signaling
import StunTurn
import Synchronization

/// What the signaling port's admin endpoints ask of the rest of the process: metrics, the TURN half's
/// state, readiness and the log level.
final class OperatorBackend: AdminBackend {
    let turn: TurnServer
    let exporter: PrometheusExporter
    let logLevelControl: LogLevelControl
    /// signaling.enabled (false: the port serves health and admin endpoints only).
    let signaling: Bool
    private let turnBound = Atomic<Bool>(false)

    let cluster: ClusterNode?

    init(turn: TurnServer, exporter: PrometheusExporter, logLevel: LogLevelControl, signaling: Bool, cluster: ClusterNode? = nil) {
        self.turn = turn
        self.cluster = cluster
        self.signaling = signaling
        self.exporter = exporter
        self.logLevelControl = logLevel
    }

    func markTurnReady() { turnBound.store(true, ordering: .relaxed) }

    func metrics() async -> String { await exporter.scrape() }

    func turnStatus() async -> String {
        let allocations = await turn.allocations().sorted { $0.client < $1.client }
        let stats = turn.shared.stats
        let counters = stats.snapshot.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
        let errors = stats.errorResponsesByCode.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let list = (try? encoder.encode(allocations)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        return #"{"draining":\#(turn.shared.isDraining),"counters":{\#(counters)},"errors":{\#(errors)},"allocations":\#(list)}"#
    }

    func clusterStatus() -> String {
        guard let cluster else { return "null" }
        struct Status: Encodable {
            let name: String
            let instance: String
            let linked: Bool
            let instances: [ClusterInstanceStatus]
            let nats: [String: Int]
            let messages: [String: Int]
        }
        let n = cluster.client.stats, c = cluster.stats
        let status = Status(
            name: cluster.configuration.name, instance: cluster.instanceID, linked: cluster.isLinked, instances: cluster.instances(),
            nats: ["reconnects": n.reconnects, "messages_in": n.messagesIn, "messages_out": n.messagesOut, "bytes_in": n.bytesIn,
                   "bytes_out": n.bytesOut, "dropped": n.dropped, "server_errors": n.serverErrors],
            messages: ["forwarded": c.forwarded, "received": c.received, "undeliverable": c.undeliverable,
                       "broadcasts_out": c.broadcastsOut, "broadcasts_in": c.broadcastsIn, "dead_instances": c.deadInstances,
                       "resyncs": c.resyncs, "malformed": c.malformed])
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(status)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }

    var turnReady: Bool { turnBound.load(ordering: .relaxed) && !turn.shared.isDraining }

    var logLevel: String { logLevelControl.current.rawValue }

    func setLogLevel(_ name: String) -> Bool {
        guard let level = Logger.Level(rawValue: name.lowercased()) else { return false }
        logLevelControl.current = level
        return true
    }

    var version: String { WebRTCServer.version }

    var features: [String] {
        var f = (signaling ? ["signaling"] : []) + ["turn-udp", "metrics", "dashboard"]
        if turn.shared.configuration.tcp { f += ["turn-tcp", "rfc6062"] }
        if turn.shared.configuration.tls != nil { f.append("turn-tls") }
        if turn.shared.relayedIP6 != nil { f.append("ipv6-relay") }
        if cluster != nil { f.append("cluster") }
        return f
    }
}
