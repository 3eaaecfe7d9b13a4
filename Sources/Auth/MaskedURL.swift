/// A URL as logs and `check-config` show it: whatever stands between `://` and the last `@` (user and
/// password) replaced by `****`. Used for `cluster.nats` and `auth.postgresql`.
public func maskingCredentials(_ url: String) -> String {
    guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].lastIndex(of: "@") else { return url }
    return String(url[..<scheme.upperBound]) + "****" + String(url[at...])
}
