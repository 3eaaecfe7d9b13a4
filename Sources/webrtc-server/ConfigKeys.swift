/// Every configuration key, once: name, kind, default and help. docs/configuration.md documents the
/// same list; `webrtc-server --help` prints it.
struct ConfigKey {
    enum Kind { case scalar, list, map }
    let name: String
    let kind: Kind
    let defaultValue: String
    let help: String

    var environmentName: String {
        ConfigSources.environmentPrefix + name.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    var flagName: String { name.replacingOccurrences(of: ".", with: "-").replacingOccurrences(of: "_", with: "-") }

    func rawFromString(_ s: String) throws -> RawValue {
        switch kind {
        case .scalar:
            return .scalar(s)
        case .list:
            return .list(s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        case .map:
            var m: [String: String] = [:]
            for pair in s.split(separator: ",") {
                guard let eq = pair.firstIndex(of: "=") else {
                    throw ConfigError(key: name, problem: "expected name=value pairs separated by commas")
                }
                m[String(pair[..<eq]).trimmingCharacters(in: .whitespaces)] = String(pair[pair.index(after: eq)...])
            }
            return .map(m)
        }
    }
}

enum ConfigKeys {
    static let all: [ConfigKey] = [
        ConfigKey(name: "log_level", kind: .scalar, defaultValue: "info",
                  help: "trace, debug, info, notice, warning, error or critical"),
        ConfigKey(name: "realm", kind: .scalar, defaultValue: "webrtc-server",
                  help: "TURN realm: part of the long-term key MD5(user:realm:password)"),
        ConfigKey(name: "software", kind: .scalar, defaultValue: "webrtc-server",
                  help: "SOFTWARE attribute in STUN responses; empty sends none"),
        ConfigKey(name: "turn.listen", kind: .list, defaultValue: "0.0.0.0",
                  help: "addresses the STUN/TURN UDP listeners bind to"),
        ConfigKey(name: "turn.port", kind: .scalar, defaultValue: "3478", help: "STUN/TURN UDP port"),
        ConfigKey(name: "turn.relay_address", kind: .scalar, defaultValue: "0.0.0.0",
                  help: "local address relay sockets bind to"),
        ConfigKey(name: "turn.external_ip", kind: .scalar, defaultValue: "",
                  help: "IP told to clients as the relayed address (host behind NAT); empty = the relay/listen address or the first non-loopback interface address"),
        ConfigKey(name: "turn.relay_port_min", kind: .scalar, defaultValue: "49152", help: "lowest relay port"),
        ConfigKey(name: "turn.relay_port_max", kind: .scalar, defaultValue: "65535", help: "highest relay port"),
        ConfigKey(name: "turn.default_lifetime", kind: .scalar, defaultValue: "600", help: "allocation lifetime in seconds when the client asks for less"),
        ConfigKey(name: "turn.max_lifetime", kind: .scalar, defaultValue: "3600", help: "cap on the allocation lifetime in seconds"),
        ConfigKey(name: "turn.permission_lifetime", kind: .scalar, defaultValue: "300", help: "permission lifetime in seconds"),
        ConfigKey(name: "turn.channel_lifetime", kind: .scalar, defaultValue: "600", help: "channel binding lifetime in seconds"),
        ConfigKey(name: "turn.nonce_lifetime", kind: .scalar, defaultValue: "600", help: "seconds before a nonce is stale (438)"),
        ConfigKey(name: "turn.nonce_secret", kind: .scalar, defaultValue: "",
                  help: "key for stateless nonces; empty = random per process"),
        ConfigKey(name: "turn.max_allocations", kind: .scalar, defaultValue: "10000", help: "allocations in total (508 beyond); 0 = unlimited"),
        ConfigKey(name: "turn.max_allocations_per_user", kind: .scalar, defaultValue: "0", help: "allocations per username (486 beyond); 0 = unlimited"),
        ConfigKey(name: "turn.max_permissions_per_allocation", kind: .scalar, defaultValue: "64", help: "permissions per allocation (508 beyond)"),
        ConfigKey(name: "turn.threads", kind: .scalar, defaultValue: "0", help: "UDP listener sockets/event loops per address; 0 = half the cores, at least 1 (the kernel needs the rest: see BENCHMARKS.md)"),
        ConfigKey(name: "turn.udp_gso", kind: .scalar, defaultValue: "true",
                  help: "send runs of same-sized datagrams to one destination as one UDP GSO write (Linux 4.18+; ignored where unsupported)"),
        ConfigKey(name: "turn.strict_channel_numbers", kind: .scalar, defaultValue: "false",
                  help: "accept only RFC 8656 channel numbers 0x4000-0x4FFF in ChannelBind; false also accepts RFC 5766's 0x5000-0x7FFF (coturn's clients use them)"),
        ConfigKey(name: "turn.allow_peers", kind: .list, defaultValue: "",
                  help: "CIDRs peers may be in even if denied (takes precedence over deny_peers and the built-in list)"),
        ConfigKey(name: "turn.deny_peers", kind: .list, defaultValue: "", help: "CIDRs refused in addition to the built-in private/loopback ranges"),
        ConfigKey(name: "auth.users", kind: .map, defaultValue: "", help: "static users: name → password"),
        ConfigKey(name: "auth.secrets", kind: .list, defaultValue: "",
                  help: "shared secrets for ephemeral TURN REST credentials; the first mints, all verify"),
    ]

    static let byName: [String: ConfigKey] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

import Foundation
