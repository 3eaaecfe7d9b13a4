import Auth
import Crypto
import Foundation

/// Stateless nonces (RFC 8489 §9.2): the nonce carries its own issue time and an HMAC over that time
/// and the client's IP, so the server keeps no per-client state and a nonce is useless from another
/// address. A nonce older than `lifetime` seconds is stale → 438 with a fresh one (§9.2.4).
///
/// Every nonce starts with the "nonce cookie" `obMatJos2` and the base64 of the 24-bit security
/// feature set (§9.2, §18.1): bit 0 = password algorithms, bit 1 = username anonymity (USERHASH).
public struct NonceManager: Sendable {
    public static let cookie = "obMatJos2"
    /// Both features (bits 0 and 1 of the 24-bit set): 0xC00000 in base64.
    public static let featureSet = "wAAA"

    private let secret: [UInt8]
    public let lifetime: Int
    private let clock: @Sendable () -> Int

    /// Wall-clock seconds (nonces must mean the same on every instance of a cluster).
    public static func systemSeconds() -> Int { Int(Date().timeIntervalSince1970) }

    public init(secret: [UInt8], lifetime: Int, clock: @escaping @Sendable () -> Int = NonceManager.systemSeconds) {
        self.secret = secret
        self.lifetime = lifetime
        self.clock = clock
    }

    public enum Validity: Equatable, Sendable { case valid, stale }

    public func make(for client: IPAddress) -> String {
        let ts = clock()
        return Self.cookie + Self.featureSet + String(UInt64(ts), radix: 16).leftPadded(16) + mac(ts, client)
    }

    public func check(_ nonce: String, for client: IPAddress) -> Validity {
        let prefix = Self.cookie + Self.featureSet
        guard nonce.hasPrefix(prefix) else { return .stale }
        let rest = nonce.dropFirst(prefix.count)
        guard rest.count == 16 + 24, let ts = UInt64(rest.prefix(16), radix: 16), ts < UInt64(Int.max) else { return .stale }
        let t = Int(ts)
        guard constantTimeEqual(Array(mac(t, client).utf8), Array(rest.dropFirst(16).utf8)) else {
            return .stale
        }
        let age = clock() - t
        return age >= -5 && age <= lifetime ? .valid : .stale
    }

    private func mac(_ ts: Int, _ client: IPAddress) -> String {
        let input = UInt64(ts).bigEndianBytes8 + client.bytes
        let code = HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: secret))
        return code.prefix(12).map { String($0, radix: 16).leftPadded(2) }.joined()
    }
}

extension UInt64 {
    var bigEndianBytes8: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: self >> (56 - 8 * $0)) } }
}
