#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking TCP connection to 127.0.0.1 for tests. From async tests, make the calls that wait
/// through `offPool` (SignalingTests' support): blocked cooperative threads starve the server under test.
public final class TCPTestSocket: @unchecked Sendable {
    public let fd: Int32

    public init?(port: UInt16, timeoutMilliseconds: Int = 2000) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { close(fd); return nil }
        self.fd = fd
    }

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    public func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends up to `total` bytes in 64 KiB writes until one blocks for `timeoutMilliseconds`; returns how
    /// many were sent (how much the other side let in).
    public func push(total: Int, timeoutMilliseconds: Int) -> Int {
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let chunk = [UInt8](repeating: 0x5A, count: 65536)
        var sent = 0
        while sent < total {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { break }
            sent += n
        }
        return sent
    }

    /// Exactly `count` bytes, or nil on timeout or close.
    public func receive(count: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < count {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - out.count), 0) }
            guard n > 0 else { return nil }
            out += chunk[0..<n]
        }
        return out
    }

    /// One STUN message (20-byte header, then its length).
    public func receiveStun() -> [UInt8]? {
        guard let header = receive(count: 20) else { return nil }
        let length = Int(header[2]) << 8 | Int(header[3])
        guard let body = receive(count: length) else { return nil }
        return header + body
    }

    /// True once the server has closed the connection (a read returns 0).
    public func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    public func shutdown() { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    /// Sends FIN and keeps reading: the half-close a killed client's kernel does.
    public func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Reads and discards until the server closes (true) or a read fails or times out (false).
    public func drainUntilClosed() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return false }
        }
    }

    /// Reads until `terminator` has arrived (inclusive), or nil on timeout or close.
    public func receive(through terminator: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while !out.suffix(terminator.count).elementsEqual(terminator) {
            guard recv(fd, &byte, 1, 0) == 1 else { return nil }
            out.append(byte)
        }
        return out
    }
}

/// A listening TCP socket on 127.0.0.1 (a test's TCP peer); `accept` waits up to the timeout.
public final class TCPTestListener {
    public let fd: Int32
    public let port: UInt16

    public init?(timeoutMilliseconds: Int = 3000) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0, listen(fd, 8) == 0 else { close(fd); return nil }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: bound.sin_port)
    }

    deinit { close(fd) }

    /// The next connection as a socket with the same timeout, or nil.
    public func accept() -> TCPTestSocket? {
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { return nil }
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return TCPTestSocket(adopting: client)
    }
}

extension TCPTestSocket {
    /// Wraps an already connected descriptor.
    public convenience init(adopting fd: Int32) {
        self.init(fd: fd)
    }
}
