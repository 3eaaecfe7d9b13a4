import Foundation
import NIOCore

/// The client's address when the signaling port sits behind reverse proxies (`signaling.trusted_proxies`,
/// e.g. the nginx of dist/): the auth throttle must count the browser's address, not the proxy's, or one
/// client's failed logins would block every user behind that proxy.
///
/// `X-Forwarded-For` is believed only when the TCP peer is a trusted proxy, and only back to the first hop
/// that is not one: each proxy appends the address it received the request from, so the rightmost
/// untrusted entry is the one no client could forge. With no trusted proxies configured the header is
/// ignored, and a client cannot pick its own address to dodge the throttle.
enum ForwardedFor {
    /// The client's address bytes (4 or 16) for a request from `peer` carrying `values` (every
    /// X-Forwarded-For header line, in order). The walk stops at an entry that is not an IP address:
    /// the hop that wrote it is the client then.
    static func client(peer: [UInt8], values: [String], trusted: ([UInt8]) -> Bool) -> [UInt8] {
        guard trusted(peer) else { return peer }
        var client = peer
        for hop in values.flatMap({ $0.split(separator: ",") }).reversed() {
            guard let address = ipAddress(hop) else { return client }
            client = address
            if !trusted(address) { return address }
        }
        return client
    }

    /// An IPv4 or IPv6 literal (IPv6 also in brackets) as address bytes.
    static func ipAddress(_ text: Substring) -> [UInt8]? {
        var s = Substring(text.trimmingCharacters(in: .whitespaces))
        if s.first == "[", s.last == "]" { s = s.dropFirst().dropLast() }
        guard !s.isEmpty, let address = try? SocketAddress(ipAddress: String(s), port: 0) else { return nil }
        return address.addressBytes
    }
}
