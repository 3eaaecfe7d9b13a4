import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The socket that holds the second port of an EVEN-PORT reservation (RFC 8656 §7.2: the server
/// "reserves" it for the RESERVATION-TOKEN) until the token is redeemed or expires, so that no other
/// socket on the host can take the port meanwhile. A plain bound UDP socket that nobody reads; when the
/// token is redeemed it becomes the new allocation's relay socket (NIO adopts the descriptor).
enum ReservedPortSocket {
    /// Binds a UDP socket to the port reserved under `token` (on `host`, the relay bind address of the
    /// reservation's family; IPv6-only for IPv6, as the relay sockets are) and gives it to the pool to
    /// keep. false when another socket already has the port or the token is gone.
    static func hold(_ token: UInt64, in pool: RelayPortPool, host: String) -> Bool {
        guard let reserved = pool.reservedPort(token: token),
              let fd = try? UDPSocket.bound(host: host, port: Int(reserved.port))
        else { return false }
        return pool.attach(fd, to: token)
    }
}
