import Auth
import Cluster
import Foundation
import Logging
import ServerMetrics
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

    func turnStatus() async -> any Encodable & Sendable {
        struct Status: Encodable, Sendable {
            let draining: Bool
            let counters: [String: Int]
            let errors: [String: Int]
            let allocations: [AllocationInfo]
        }
        let stats = turn.stats
        return Status(draining: turn.isDraining, counters: stats.snapshot,
                                  errors: Dictionary(uniqueKeysWithValues: stats.errorResponsesByCode.map { ("\($0.key)", $0.value) }),
                      allocations: await turn.allocations().sorted { $0.client < $1.client })
    }

    func clusterStatus() -> (any Encodable & Sendable)? {
        guard let cluster else { return nil }
        struct Status: Encodable, Sendable {
            let name: String
            let instance: String
            let linked: Bool
            let instances: [ClusterInstanceStatus]
            let nats: [String: Int]
            let messages: [String: Int]
        }
        func byKey(_ metrics: [Metric]) -> [String: Int] {
            Dictionary(uniqueKeysWithValues: metrics.compactMap { m in m.json.map { ($0, m.total) } })
        }
        return Status(name: cluster.configuration.name, instance: cluster.instanceID, linked: cluster.isLinked,
                      instances: cluster.instances(), nats: byKey(cluster.client.stats.metrics),
                      messages: byKey(cluster.stats.metrics))
    }

    var turnReady: Bool { turnBound.load(ordering: .relaxed) && !turn.isDraining }

    var logLevel: String { logLevelControl.current.rawValue }

    func setLogLevel(_ name: String) -> Bool {
        guard let level = Logger.Level(rawValue: name.lowercased()) else { return false }
        logLevelControl.current = level
        return true
    }

    var version: String { WebRTCService.version }

    var features: [String] {
        var f = (signaling ? ["signaling"] : []) + ["turn-udp", "metrics", "dashboard"]
        if turn.configuration.tcp { f += ["turn-tcp", "rfc6062"] }
        if turn.configuration.tls != nil { f.append("turn-tls") }
        if turn.relayedIP6 != nil { f.append("ipv6-relay") }
        if cluster != nil { f.append("cluster") }
        return f
    }
}
