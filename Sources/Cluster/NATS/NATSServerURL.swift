/// One NATS server to connect to: `nats://[user:password@]host[:4222]`, or `tls://…` to require TLS.
/// A token may stand alone as the user part (`nats://TOKEN@host`).
public struct NATSServerURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String?
    public var password: String?
    /// `tls://`: TLS is required on this server even if it does not ask for it.
    public var requiresTLS: Bool

    public init?(_ text: String) {
        var rest = Substring(text)
        if let scheme = rest.range(of: "://") {
            switch rest[..<scheme.lowerBound].lowercased() {
            case "nats": requiresTLS = false
            case "tls": requiresTLS = true
            default: return nil
            }
            rest = rest[scheme.upperBound...]
        } else {
            requiresTLS = false
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon]).removingPercentEscapes
                password = String(credentials[credentials.index(after: colon)...]).removingPercentEscapes
            } else {
                user = String(credentials).removingPercentEscapes
            }
        }
        // [v6]:port, host:port or host.
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.isEmpty {
                port = 4222
            } else {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        } else {
            host = String(rest)
            port = 4222
        }
        guard !host.isEmpty, !host.contains("/") else { return nil }
    }

    /// Without credentials (for logs).
    public var description: String {
        "\(requiresTLS ? "tls" : "nats")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }
}

extension String {
    fileprivate var removingPercentEscapes: String {
        guard contains("%") else { return self }
        var out: [UInt8] = []
        var bytes = Array(utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%"), bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
