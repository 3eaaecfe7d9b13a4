import AsyncHTTPClient
import Auth
import Foundation
import NIOCore
import NIOFoundationCompat

/// `auth.http_lookup`: asks the app's backend. Each lookup the cache does not answer is one POST of
/// `{"realm":…,"timestamp":…,"username":…}` (JSON), signed like the webhook with
/// `X-Webrtc-Signature: sha256=<hex HMAC-SHA256(auth.http_lookup_secret, body)>`. The backend answers
/// - 200 with `{"password":"…"}`, `{"passwords":["…",…]}` or `{"hmackey":"<32 hex digits>"}` (the
///   long-term key MD5(user:realm:password)): the user and what they log in with;
/// - 404: no such user; 410: the user exists but may no longer log in;
/// - anything else (another status, a body that is none of these, no answer in time) is a failed
///   lookup: that login fails, and the answer is not cached.
public struct HTTPLookup: PasswordLookup {
    public let url: URL
    let secret: String
    let timeout: TimeAmount

    public init(url: URL, secret: String, timeout: TimeInterval) throws {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
            throw LookupSetupError("auth.http_lookup: \(url.absoluteString) is not an http:// or https:// URL")
        }
        self.url = url
        self.secret = secret
        self.timeout = .milliseconds(Int64(timeout * 1000))
    }

    struct Question: Encodable {
        let realm: String
        let timestamp: Int
        let username: String
    }

    struct Answer: Decodable {
        let password: String?
        let passwords: [String]?
        let hmackey: String?
    }

    public enum Failure: Error, CustomStringConvertible {
        case status(Int)
        case unreadable(String)

        public var description: String {
            switch self {
            case .status(let s): "auth.http_lookup answered HTTP \(s)"
            case .unreadable(let why): "auth.http_lookup's answer is unreadable: \(why)"
            }
        }
    }

    public func lookup(username: String, realm: String) async throws -> LookupAnswer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = try encoder.encode(Question(realm: realm, timestamp: Int(Date().timeIntervalSince1970), username: username))
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "webrtc-server")
        if !secret.isEmpty { request.headers.add(name: RequestSignature.header, value: RequestSignature.value(body: Array(body), secret: secret)) }
        request.body = .bytes(ByteBuffer(data: body))
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 64 * 1024)
        switch response.status.code {
        case 200: break
        case 404: return .unknown
        case 410: return .expired
        default: throw Failure.status(Int(response.status.code))
        }
        let answer: Answer
        do {
            answer = try JSONDecoder().decode(Answer.self, from: bytes)
        } catch {
            throw Failure.unreadable("\(error)")
        }
        var secrets: [StoredSecret] = (answer.passwords ?? []).map { .password($0) }
        if let p = answer.password { secrets.append(.password(p)) }
        if let hex = answer.hmackey {
            guard let key = StoredSecret.longTermKey(hex: hex) else { throw Failure.unreadable("hmackey is not 32 hexadecimal digits") }
            secrets.append(key)
        }
        guard !secrets.isEmpty else { throw Failure.unreadable("no password, passwords or hmackey") }
        return .found(secrets)
    }
}
