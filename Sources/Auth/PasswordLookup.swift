import Crypto

/// What a username's password is known as: the password itself, or the long-term key
/// MD5(username:realm:password) of RFC 8489 §9.2.2, which is what coturn's user databases keep
/// (`turnusers_lt.hmackey`). A key verifies TURN requests that use the MD5 password algorithm (every
/// browser does) and a signaling login's password (hashed the same way); it cannot verify the SHA-256
/// password algorithm, which needs the password.
public enum StoredSecret: Sendable, Hashable {
    case password(String)
    /// MD5(username:realm:password) for the realm the lookup was asked with (16 bytes).
    case longTermKey([UInt8])

    /// True when `password` is this secret (for `username` in `realm`), compared in constant time.
    public func accepts(_ password: String, username: String, realm: String) -> Bool {
        switch self {
        case .password(let p): return constantTimeEqual(Array(p.utf8), Array(password.utf8))
        case .longTermKey(let k): return constantTimeEqual(k, Self.md5Key(username: username, realm: realm, password: password))
        }
    }

    /// The long-term MD5 key (RFC 8489 §9.2.2); TURN's MD5 password algorithm uses this one.
    public static func md5Key(username: String, realm: String, password: String) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array("\(username):\(realm):\(password)".utf8)))
    }

    /// A key written as 32 hexadecimal digits (coturn's `hmackey` column), nil for anything else.
    public static func longTermKey(hex: String) -> StoredSecret? {
        let digits = Array(hex.utf8)
        guard digits.count == 32 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for i in stride(from: 0, to: 32, by: 2) {
            guard let hi = hexValue(digits[i]), let lo = hexValue(digits[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
        }
        return .longTermKey(bytes)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A password lookup's answer for one username.
public enum LookupAnswer: Sendable, Equatable {
    /// The user's password(s) or key(s): any of them is accepted.
    case found([StoredSecret])
    /// No such user here (the next lookup of a chain is asked).
    case unknown
    /// The user exists but may no longer log in.
    case expired

    public static func password(_ password: String) -> LookupAnswer { .found([.password(password)]) }
}

/// The password lookup both halves of the server use, as code: the counterpart of the original
/// server's `auth_fun(Username) -> Password`. It may be asynchronous (a database, an HTTP call): the
/// server never waits for it on an event loop (see `LookupChain`). An error thrown (or a lookup that
/// outlives its timeout) is an authentication failure for that login.
public protocol PasswordLookup: Sendable {
    /// `realm`: the TURN realm, which a stored long-term key was made with.
    func lookup(username: String, realm: String) async throws -> LookupAnswer
}

/// A lookup made of a closure: `LookupFunction { user, realm in … }`.
public struct LookupFunction: PasswordLookup {
    let body: @Sendable (String, String) async throws -> LookupAnswer

    public init(_ body: @escaping @Sendable (_ username: String, _ realm: String) async throws -> LookupAnswer) {
        self.body = body
    }

    public func lookup(username: String, realm: String) async throws -> LookupAnswer {
        try await body(username, realm)
    }
}
