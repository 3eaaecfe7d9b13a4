/// One metric as declared by the part of the server that counts it: its Prometheus name, kind and help,
/// where it appears in `/api/stats`, and how to read it. Each module declares its list once
/// (`TurnStats.metrics`, `SignalingStats.metrics`, …); `/metrics`, `/api/stats` and the README's metrics
/// table all come from those lists (`webrtc-server --print-metrics-table`, checked against the README by
/// the tests).
public struct Metric: Sendable {
    public enum Kind: String, Sendable { case counter, gauge }

    /// One value with its labels (empty for an unlabelled metric).
    public struct Sample: Sendable {
        public let labels: [(String, String)]
        public let value: Int
        public init(_ labels: [(String, String)] = [], _ value: Int) {
            self.labels = labels
            self.value = value
        }
    }

    /// The Prometheus name (`webrtc_…`); nil for a figure of `/api/stats` only.
    public let name: String?
    public let kind: Kind
    /// The label names, for the README (the samples carry their values).
    public let labelNames: [String]
    public let help: String
    /// Its key in its section of `/api/stats`. Nil = not in `/api/stats`.
    public let json: String?
    /// There an object by its (single) label's value; otherwise a number, the samples' total.
    public let jsonByLabel: Bool
    public let samples: @Sendable () -> [Sample]

    /// `jsonByLabel`: by default a labelled metric is an object in `/api/stats`.
    public init(_ name: String?, _ kind: Kind, labels: [String] = [], json: String? = nil, jsonByLabel: Bool? = nil,
                help: String, samples: @escaping @Sendable () -> [Sample]) {
        self.name = name
        self.kind = kind
        self.labelNames = labels
        self.help = help
        self.json = json
        self.jsonByLabel = jsonByLabel ?? !labels.isEmpty
        self.samples = samples
    }

    /// The value of an unlabelled metric, or a labelled one's total.
    public var total: Int { samples().reduce(0) { $0 + $1.value } }

    /// An unlabelled counter or gauge read from `value`.
    public static func value(_ name: String?, _ kind: Kind, json: String? = nil, help: String,
                             _ value: @escaping @Sendable () -> Int) -> Metric {
        Metric(name, kind, json: json, help: help) { [Sample([], value())] }
    }

    /// A `StatCounter` as an unlabelled metric.
    public static func counter(_ name: String?, json: String? = nil, help: String, _ counter: StatCounter) -> Metric {
        .value(name, .counter, json: json, help: help) { counter.value }
    }

    /// A `StatCounter` as an unlabelled gauge.
    public static func gauge(_ name: String?, json: String? = nil, help: String, _ counter: StatCounter) -> Metric {
        .value(name, .gauge, json: json, help: help) { counter.value }
    }

    /// `LabeledCounters` as a counter with one label.
    public static func labeled<L>(_ name: String, label: String, json: String? = nil, help: String,
                                  _ counters: LabeledCounters<L>) -> Metric {
        Metric(name, .counter, labels: [label], json: json, help: help) {
            counters.values.map { Sample([(label, $0.label)], $0.value) }
        }
    }

    /// `metrics` as the JSON object of a section of `/api/stats` (text, keys in order of declaration).
    /// One metric's value in `/api/stats`: its total, or one number per label value.
    public enum JSONValue: Encodable, Sendable, Equatable {
        case total(Int)
        case byLabel([String: Int])

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .total(let n): try c.encode(n)
            case .byLabel(let m): try c.encode(m)
            }
        }
    }

    /// The metrics that have an `/api/stats` key, by that key.
    public static func jsonValues(_ metrics: [Metric]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for m in metrics {
            guard let key = m.json else { continue }
            let samples = m.samples()
            out[key] = m.jsonByLabel
                ? .byLabel(Dictionary(samples.map { ($0.labels.first?.1 ?? "", $0.value) }, uniquingKeysWith: +))
                : .total(samples.reduce(0) { $0 + $1.value })
        }
        return out
    }

    /// The README's metrics table (Markdown), one row per Prometheus metric.
    public static func markdownTable(_ metrics: [Metric]) -> String {
        var out = "| metric | type | labels | meaning |\n|---|---|---|---|\n"
        var seen: Set<String> = []
        for m in metrics {
            guard let name = m.name, seen.insert(name).inserted else { continue }  // one row per name
            let labels = m.labelNames.isEmpty ? "" : m.labelNames.map { "`\($0)`" }.joined(separator: ", ")
            out += "| `\(name)` | \(m.kind.rawValue) | \(labels) | \(m.help) |\n"
        }
        return out
    }
}
