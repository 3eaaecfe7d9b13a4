import Logging
import NIOSSL
import Synchronization

/// The TLS certificate and key of a listener, re-readable without a restart: each new connection takes
/// the context current when it is accepted, so connections already open keep theirs. A file that cannot
/// be read, or a key that does not match the certificate, leaves the previous pair in use.
public final class ReloadableTLSContext: Sendable {
    public let certificatePath: String
    public let keyPath: String
    private let context: Mutex<NIOSSLContext>

    public init(certificatePath: String, keyPath: String) throws {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        context = Mutex(try Self.load(certificatePath: certificatePath, keyPath: keyPath))
    }

    /// The one builder of a listener's TLS context: TLS 1.2 and 1.3 only (RFC 8656 §3.1 asks for TLS 1.2
    /// at least; the same for the signaling port's https/wss).
    public static func load(certificatePath: String, keyPath: String) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        // NIOSSLContext checks that the key belongs to the certificate.
        return try NIOSSLContext(configuration: configuration)
    }

    public var current: NIOSSLContext { context.withLock { $0 } }

    /// Re-reads both files; on failure logs one line and keeps the old pair. Returns whether it changed.
    @discardableResult
    public func reload(logger: Logger) -> Bool {
        do {
            let fresh = try Self.load(certificatePath: certificatePath, keyPath: keyPath)
            context.withLock { $0 = fresh }
            logger.info("TLS certificate reloaded", metadata: ["certificate": "\(certificatePath)"])
            return true
        } catch {
            logger.error("TLS certificate not reloaded; the previous one stays in use",
                         metadata: ["certificate": "\(certificatePath)", "key": "\(keyPath)", "error": "\(error)"])
            return false
        }
    }
}
