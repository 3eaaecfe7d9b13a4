import Foundation
import Crypto

/// How the server signs what it sends to the app's backend (the webhook, the HTTP password lookup):
/// `X-Webrtc-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. Bodies carry a `timestamp` so that a
/// receiver can refuse old ones.
public enum RequestSignature {
    public static let header = "X-Webrtc-Signature"

    /// The header's value for `body`.
    public static func value(body: [UInt8], secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}
