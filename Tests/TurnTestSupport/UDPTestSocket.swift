#if canImport(Glibc)
import Glibc
#endif
import StunTurn

/// A plain blocking UDP socket on 127.0.0.1 for tests: a client of the server under test, or a peer.
public final class UDPTestSocket {
    public let fd: Int32
    public let port: UInt16

    public let ip: String

    public init(ip: String = "127.0.0.1", port requestedPort: UInt16 = 0, timeoutMilliseconds: Int = 2000) {
        self.ip = ip
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(ip)
        addr.sin_port = requestedPort.bigEndian
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = UInt16(bigEndian: bound.sin_port)
    }

    deinit { close(fd) }

    public var address: TransportAddress { TransportAddress(ip: IPAddress(ip)!, port: port) }

    public func send(_ bytes: [UInt8], to port: UInt16) {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        _ = bytes.withUnsafeBytes { buf in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// The next datagram and its source port, or nil after the receive timeout.
    public func receive() -> (bytes: [UInt8], fromPort: UInt16)? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var from = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buffer.withUnsafeMutableBytes { buf in
            withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, buf.baseAddress, buf.count, 0, $0, &len) }
            }
        }
        guard n >= 0 else { return nil }
        return (Array(buffer[0..<n]), UInt16(bigEndian: from.sin_port))
    }
}
