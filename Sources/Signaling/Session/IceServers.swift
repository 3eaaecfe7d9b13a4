import Auth

/// Builds `authenticated.data.ice_servers`: a list ready for `new RTCPeerConnection({iceServers})`, with
/// TURN credentials minted for this session (revoked when it ends).
enum IceServers {
    /// Without a credential (a token whose `permissions.turn` is false) only the STUN entry.
    static func json(settings: IceServerSettings, host: String, credential: SessionCredentials.Credential?) -> String {
        let h = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        var entries: [String] = [#"{"urls":["# + JSONText.quoted("stun:\(h):\(settings.stunPort)") + "]}"]
        var turnURLs: [String] = []
        if settings.turnUDP { turnURLs.append("turn:\(h):\(settings.stunPort)?transport=udp") }
        if settings.turnTCP { turnURLs.append("turn:\(h):\(settings.stunPort)?transport=tcp") }
        if let p = settings.turnsPort { turnURLs.append("turns:\(h):\(p)?transport=tcp") }
        if let credential, !turnURLs.isEmpty {
            entries.append(#"{"urls":["# + turnURLs.map(JSONText.quoted).joined(separator: ",")
                + #"],"username":"# + JSONText.quoted(credential.username)
                + #","credential":"# + JSONText.quoted(credential.password) + "}")
        }
        return "[" + entries.joined(separator: ",") + "]"
    }

    /// The host part of an HTTP `Host`/authority value (`example.com:8080`, `[::1]:8080`, `1.2.3.4`).
    static func hostname(fromAuthority authority: String) -> String {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            return String(authority[authority.index(after: authority.startIndex)..<close])
        }
        if let colon = authority.lastIndex(of: ":"), authority.filter({ $0 == ":" }).count == 1 {
            return String(authority[..<colon])
        }
        return authority
    }
}
