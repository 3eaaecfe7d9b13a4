import Auth

/// What the `webrtc-server` command prints besides running: the keys for --help, the example
/// configuration, check-config's effective settings and the ports for firewall.sh.
public enum CommandLineText {
    /// One line per key: flag, environment variable, default and help.
    public static var keys: String {
        ConfigKeys.all.map { "  --\($0.name) (\($0.environmentName), default '\($0.defaultValue)'): \($0.help)" }
            .joined(separator: "\n")
    }

    /// dist/webrtc-server.yaml (`--print-example-config`).
    public static var exampleConfiguration: String { ExampleConfiguration.yaml }

    /// The effective value of every key, secrets masked (`check-config`).
    public static func effectiveSettings(_ settings: ServerSettings) -> String {
        var out = "# configuration is valid; effective settings (defaults < file < environment < flags):\n"
        for key in ConfigKeys.all {
            var value = settings.raw[key.name]
            // URLs may carry credentials: shown without them.
            if key.name == ConfigKey.clusterNats.name, case .list(let urls)? = value { value = .list(urls.map(maskingCredentials)) }
            out += "\(key.name): \(ExampleConfiguration.render(value, masked: key.secret))\n"
        }
        return out
    }

    /// What a firewall must let in, one "proto port purpose" per line (`--print-ports`, read by firewall.sh).
    public static func listeningPorts(_ settings: ServerSettings) -> String {
        settings.listeningPorts.map { "\($0.proto) \($0.port) \($0.purpose)" }.joined(separator: "\n")
    }
}
