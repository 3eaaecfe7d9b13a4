// The same forwarder without SwiftNIO (`nio-udp-floor --raw`): one thread, level-triggered epoll, one
// recvmmsg per readable socket (32 datagrams from the clients, 8 from upstream), what was read sent on
// with one sendmmsg, buffers allocated once. What a relay data plane beside NIO's channel pipeline
// would cost at the least, next to the NIO floor and to coturn in the same run.
import CEpoll
import Glibc

struct RawForwarder {
    let port: Int
    let upstreamPort: Int
    static let slot = 2048

    func run() throws -> Never {
        let listener = try Self.udpSocket(port: port)
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw ForwarderError("epoll_create1: errno \(errno)") }
        try Self.watch(listener, epoll: epoll)
        var upstream = Self.loopback(port: upstreamPort)
        // Client port (network order) → upstream socket, and upstream socket → its client's address.
        var routeOf = [Int32](repeating: -1, count: 65_536)
        var clientOf = [sockaddr_in](repeating: sockaddr_in(), count: 65_536)
        let buffers = UnsafeMutablePointer<UInt8>.allocate(capacity: 32 * Self.slot)
        var from = [sockaddr_in](repeating: sockaddr_in(), count: 32)
        var lengths = [Int32](repeating: 0, count: 32)
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        print("nio-udp-floor --raw: 127.0.0.1:\(port) -> 127.0.0.1:\(upstreamPort)")
        while true {
            let ready = epoll_wait(epoll, &events, Int32(events.count), -1)
            if ready < 0 { guard errno == EINTR else { throw ForwarderError("epoll_wait: errno \(errno)") }; continue }
            for e in 0..<Int(ready) {
                let fd = events[e].data.fd
                if fd == listener {
                    let n = Int(cepoll_recv_batch(listener, buffers, Int32(Self.slot), 32, &from, &lengths))
                    for i in 0..<max(n, 0) {
                        let clientPort = Int(from[i].sin_port)
                        var route = routeOf[clientPort]
                        if route < 0 {
                            route = try Self.udpSocket(port: 0)
                            guard Int(route) < clientOf.count else { throw ForwarderError("descriptor \(route) out of range") }
                            try Self.watch(route, epoll: epoll)
                            routeOf[clientPort] = route
                            clientOf[Int(route)] = from[i]
                        }
                        _ = cepoll_send_batch(route, buffers + i * Self.slot, Int32(Self.slot), &lengths[i], &upstream, 1, 1)
                    }
                } else {
                    let n = cepoll_recv_batch(fd, buffers, Int32(Self.slot), 8, &from, &lengths)
                    if n > 0 {
                        _ = cepoll_send_batch(listener, buffers, Int32(Self.slot), &lengths, &clientOf[Int(fd)], 1, n)
                    }
                }
            }
        }
    }

    struct ForwarderError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    static func udpSocket(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ForwarderError("socket: errno \(errno)") }
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ForwarderError("bind 127.0.0.1:\(port): errno \(errno)") }
        return fd
    }

    static func watch(_ fd: Int32, epoll: Int32) throws {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = fd
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0 else { throw ForwarderError("epoll_ctl: errno \(errno)") }
    }
}
