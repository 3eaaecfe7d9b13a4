import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// UDP sockets made and bound here, then handed to NIO (`DatagramBootstrap.withBoundSocket`), so that
/// the relay path knows their descriptors and can write relayed datagrams with `sendmmsg` itself
/// (`DatagramWriter`). IPv6 sockets take IPv6 only (IPV6_V6ONLY), so `0.0.0.0` and `::` can both be
/// bound on one port. Public for `bench/nio-udp-floor`, which makes its sockets the same way.
public enum UDPSocket {
    /// A UDP socket bound to `host:port` (a literal IP; port 0 for any). `reusePort` sets SO_REUSEPORT,
    /// for one listener socket per event loop on the same port. Throws an `IOError` naming the call.
    public static func bound(host: String, port: Int, reusePort: Bool = false) throws -> CInt {
        let address = try SocketAddress(ipAddress: host, port: port)
        let family = address.protocol.rawValue
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var on: CInt = 1
        if family == AF_INET6 {
            setsockopt(fd, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &on, socklen_t(MemoryLayout<CInt>.size))
        }
        if reusePort {
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, socklen_t(MemoryLayout<CInt>.size))
        }
        guard address.withSockAddr({ Glibc.bind(fd, $0, socklen_t($1)) }) == 0 else {
            let error = IOError(errnoCode: errno, reason: "bind(\(host):\(port))")
            Glibc.close(fd)
            throw error
        }
        return fd
    }
}
