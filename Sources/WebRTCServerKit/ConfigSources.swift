import Foundation
import Yams

/// A raw setting before validation, as any layer supplies it.
enum RawValue: Equatable {
    case scalar(String)
    case list([String])
    case map([String: String])
}

public struct ConfigError: Error, CustomStringConvertible {
    let key: String
    let problem: String
    public var description: String { "\(key): \(problem)" }

    init(key: String, problem: String) {
        self.key = key
        self.problem = problem
    }

    init(_ key: ConfigKey, problem: String) { self.init(key: key.name, problem: problem) }
}

/// The layers: embedded defaults < file < environment < flags. Each produces dotted keys → raw values.
enum ConfigSources {
    static let environmentPrefix = "WEBRTC_SERVER_"

    /// A YAML file: nested maps become dotted keys (`turn: {port: 3478}` → `turn.port`).
    static func file(at path: String) throws -> [String: RawValue] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(key: "config", problem: "cannot read \(path): \(error.localizedDescription)")
        }
        let node: Any?
        do {
            node = try Yams.load(yaml: text)
        } catch {
            // Yams reports over several lines (message, then the offending line and a caret): keep it to one.
            let detail = "\(error)".split(separator: "\n").prefix(2).joined(separator: " ")
            throw ConfigError(key: "config", problem: "\(path) is not valid YAML: \(detail)")
        }
        guard let node else { return [:] }
        guard let root = node as? [String: Any] else {
            throw ConfigError(key: "config", problem: "\(path) must contain a mapping of settings")
        }
        var out: [String: RawValue] = [:]
        try flatten(root, prefix: "", into: &out)
        return out
    }

    private static func flatten(_ map: [String: Any], prefix: String, into out: inout [String: RawValue]) throws {
        for (k, v) in map {
            let key = prefix.isEmpty ? k : "\(prefix).\(k)"
            if ConfigKeys.byName[key]?.kind == .map {
                guard let m = v as? [String: Any] else { throw ConfigError(key: key, problem: "expected a mapping") }
                out[key] = .map(m.mapValues { "\($0)" })
            } else if let m = v as? [String: Any] {
                try flatten(m, prefix: key, into: &out)
            } else if let l = v as? [Any] {
                out[key] = .list(l.map { "\($0)" })
            } else if v is NSNull {
                out[key] = .scalar("")
            } else {
                out[key] = .scalar("\(v)")
            }
        }
    }

    /// `WEBRTC_SERVER_TURN_PORT=3478` sets `turn.port`. Lists are comma-separated, maps `a=b,c=d`.
    static func environment(_ env: [String: String]) throws -> [String: RawValue] {
        var out: [String: RawValue] = [:]
        for (name, value) in env where name.hasPrefix(environmentPrefix) {
            let suffix = name.dropFirst(environmentPrefix.count).lowercased()
            guard let key = ConfigKeys.all.first(where: { $0.environmentName == environmentPrefix + suffix.uppercased() }) else {
                throw ConfigError(key: name, problem: "unknown setting (see docs/configuration.md)")
            }
            out[key.name] = try key.rawFromString(value)
        }
        return out
    }

    /// `--turn.port 3478`, `--turn.port=3478`, `--turn-port 3478`.
    static func flags(_ args: [String]) throws -> [String: RawValue] {
        var out: [String: RawValue] = [:]
        var i = 0
        while i < args.count {
            let arg = args[i]
            guard arg.hasPrefix("--") else { throw ConfigError(key: arg, problem: "unexpected argument") }
            var name = String(arg.dropFirst(2))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let key = ConfigKeys.byName[name] ?? ConfigKeys.byName[name.replacingOccurrences(of: "-", with: "_")]
                    ?? ConfigKeys.all.first(where: { $0.flagName == name })
            else { throw ConfigError(key: "--\(name)", problem: "unknown option (see --help)") }
            if value == nil {
                guard i + 1 < args.count else { throw ConfigError(key: "--\(name)", problem: "missing value") }
                i += 1
                value = args[i]
            }
            // Repeating a list or map flag adds to it.
            let parsed = try key.rawFromString(value!)
            switch (out[key.name], parsed) {
            case (.list(let a)?, .list(let b)): out[key.name] = .list(a + b)
            case (.map(let a)?, .map(let b)): out[key.name] = .map(a.merging(b) { $1 })
            default: out[key.name] = parsed
            }
            i += 1
        }
        return out
    }
}
