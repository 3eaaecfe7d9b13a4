import Auth
import Cluster
import CoreMetrics
import Foundation
import Prometheus
import ServerMetrics
import Signaling
import StunTurn
import Synchronization

/// /metrics: every metric the parts of the server declare (`TurnStats.metrics`, `SignalingHub.metrics`,
/// `ClusterNode.metrics`, and the process's own below), published through swift-metrics into a
/// swift-prometheus registry at scrape time. Counters are advanced by what changed since the last scrape,
/// gauges set to the current value. The same list makes the README's metrics table
/// (`webrtc-server --print-metrics-table`).
final class PrometheusExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let turn: TurnServer
    private let hub: SignalingHub
    private let cluster: ClusterNode?
    private let lookups: LookupChain?
    private struct Published {
        var counters: [String: (counter: CoreMetrics.Counter, last: Int)] = [:]
        var gauges: [String: CoreMetrics.Gauge] = [:]
    }
    private let published = Mutex(Published())

    init(turn: TurnServer, hub: SignalingHub, cluster: ClusterNode? = nil, lookups: LookupChain? = nil) {
        self.turn = turn
        self.lookups = lookups
        self.cluster = cluster
        self.hub = hub
        factory = PrometheusMetricsFactory(registry: registry)
    }

    /// Every metric of this process; permissions and channel bindings are summed over `allocations`.
    static func all(turn: TurnServer, hub: SignalingHub, cluster: ClusterNode?, lookups: LookupChain?,
                    allocations: [AllocationInfo]) -> [Metric] {
        let turnExtras: [Metric] = [
            .value("webrtc_turn_permissions", .gauge, help: "permissions of every allocation") { allocations.reduce(0) { $0 + $1.permissions } },
            .value("webrtc_turn_channel_bindings", .gauge, help: "channel bindings of every allocation") { allocations.reduce(0) { $0 + $1.channels } },
            .value("webrtc_draining", .gauge, help: "1 after SIGTERM, while draining") { turn.isDraining ? 1 : 0 },
        ]
        return turn.stats.metrics + turnExtras + hub.metrics + (lookups?.metrics ?? []) + (cluster?.metrics ?? []) + processMetrics
    }

    /// One scrape: the current values, in the Prometheus text format.
    func scrape() async -> String {
        let metrics = Self.all(turn: turn, hub: hub, cluster: cluster, lookups: lookups, allocations: await turn.allocations())
        published.withLock { p in
            for m in metrics {
                guard let name = m.name else { continue }
                for sample in m.samples() { publish(&p, name, m.kind, sample) }
            }
        }
        return registry.emitToString()
    }

    private func publish(_ p: inout Published, _ name: String, _ kind: Metric.Kind, _ sample: Metric.Sample) {
        let key = name + sample.labels.map { "|\($0.0)=\($0.1)" }.joined()
        switch kind {
        case .counter:
            let entry = p.counters[key] ?? (CoreMetrics.Counter(label: name, dimensions: sample.labels, factory: factory), 0)
            if sample.value > entry.last { entry.counter.increment(by: sample.value - entry.last) }
            p.counters[key] = (entry.counter, max(sample.value, entry.last))
        case .gauge:
            let g = p.gauges[key] ?? CoreMetrics.Gauge(label: name, dimensions: sample.labels, factory: factory)
            p.gauges[key] = g
            g.record(sample.value)
        }
    }

    /// Resident memory and open file descriptors, read from /proc at scrape time (Linux).
    static let processMetrics: [Metric] = [
        .value("process_resident_memory_bytes", .gauge, help: "resident memory of the process") {
            guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
                  let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
            return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        },
        .value("process_open_fds", .gauge, help: "open file descriptors of the process") {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? 0
        },
    ]
}
