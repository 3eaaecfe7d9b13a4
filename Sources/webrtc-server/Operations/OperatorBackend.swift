import Auth
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

    init(turn: TurnServer, exporter: PrometheusExporter, logLevel: LogLevelControl, signaling: Bool) {
        self.turn = turn
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
        return f
    }
}
