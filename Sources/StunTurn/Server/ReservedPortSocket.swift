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
    /// A UDP socket bound to `host:port` (IPv6-only for an IPv6 host, as the relay sockets are); nil when
    /// the port is taken or the address is not a literal IP.
    static func bind(host: String, port: UInt16) -> CInt? {
        try? UDPSocket.bound(host: host, port: Int(port))
    }

    static func close(_ fd: CInt) { _ = Glibc.close(fd) }
}
