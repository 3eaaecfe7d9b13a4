import Auth
import Hummingbird

/// The one bearer-token check of the signaling port (server API and admin endpoints).
enum BearerToken {
    /// The token of `Authorization: Bearer <token>`. The scheme is case-insensitive (RFC 9110 §11.1) and
    /// may be followed by more than one space; nil without such a header.
    static func from(_ headers: HTTPFields) -> String? {
        guard let value = headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].drop { $0 == " " }
        return token.isEmpty ? nil : String(token)
    }

    /// True when `given` is the configured token, compared in constant time; an empty configured token
    /// matches nothing (the endpoints it guards are off).
    static func matches(_ given: String?, configured: String) -> Bool {
        guard !configured.isEmpty, let given else { return false }
        return constantTimeEqual(Array(given.utf8), Array(configured.utf8))
    }
}
