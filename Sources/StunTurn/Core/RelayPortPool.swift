import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Relay ports from a configured range (RFC 8656 §7.2). A port is never handed out twice while in use;
/// EVEN-PORT with the R bit reserves the next port under a RESERVATION-TOKEN for 30 seconds (§7.2, §18.7);
/// the reserved port is held by a bound socket (`attach`, the shell binds it) until redeemed, cancelled or expired.
/// Shared by every event loop; touched only when allocations come and go, never per packet.
public final class RelayPortPool: Sendable {
    public let range: ClosedRange<UInt16>
    static let reservationSeconds: Int64 = 30

    private struct State {
        var inUse = Set<UInt16>()
        var reservations: [UInt64: Reservation] = [:]
    }

    /// A reserved port, its expiry, whether it was reserved for an IPv6 relay (RFC 6156: the token keeps
    /// the family of the allocation that reserved it), and the socket holding it (once `hold` gave one).
    private struct Reservation {
        var port: UInt16
        var expires: Int64
        var ipv6: Bool
        var socket: CInt?
    }

    private let state = Mutex(State())
    private let clock: @Sendable () -> Int64
    /// Closes the socket of a reservation that ends unredeemed (the shell's; a no-op in memory).
    private let closeSocket: @Sendable (CInt) -> Void

    public init(range: ClosedRange<UInt16>, clock: @escaping @Sendable () -> Int64 = { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000_000) },
                closeSocket: @escaping @Sendable (CInt) -> Void = { _ = close($0) }) {
        self.range = range
        self.clock = clock
        self.closeSocket = closeSocket
    }

    public var inUseCount: Int { state.withLock { $0.inUse.count } }

    /// Takes a free port, optionally even, optionally reserving the next one too. nil when exhausted.
    /// `excluding` lets a caller skip ports the OS refused to bind.
    public func acquire(even: Bool = false, reserveNext: Bool = false, excluding: Set<UInt16> = [], ipv6: Bool = false)
        -> (port: UInt16, token: UInt64?)?
    {
        let now = clock()
        let (taken, expired) = state.withLock { s -> ((UInt16, UInt64?)?, [CInt]) in
            let expired = Self.expireReservations(&s, now: now)
            return (Self.take(&s, range: range, even: even, reserveNext: reserveNext, excluding: excluding, ipv6: ipv6, now: now), expired)
        }
        for fd in expired { closeSocket(fd) }
        return taken
    }

    private static func take(_ s: inout State, range: ClosedRange<UInt16>, even: Bool, reserveNext: Bool, excluding: Set<UInt16>,
                             ipv6: Bool, now: Int64) -> (UInt16, UInt64?)? {
        let lower = Int(range.lowerBound), upper = Int(range.upperBound)
        let count = upper - lower + 1
        let start = Int.random(in: 0..<count)
        for i in 0..<count {
            let p = lower + (start + i) % count
            let port = UInt16(p)
            if s.inUse.contains(port) || excluding.contains(port) { continue }
            if even {
                guard p % 2 == 0 else { continue }
                if reserveNext {
                    guard p + 1 <= upper, !s.inUse.contains(UInt16(p + 1)), !excluding.contains(UInt16(p + 1)) else { continue }
                    s.inUse.insert(port)
                    s.inUse.insert(UInt16(p + 1))
                    var token: UInt64 = 0
                    repeat { token = UInt64.random(in: 1...UInt64.max) } while s.reservations[token] != nil
                    s.reservations[token] = Reservation(port: UInt16(p + 1), expires: now + Self.reservationSeconds, ipv6: ipv6)
                    return (port, token)
                }
            }
            s.inUse.insert(port)
            return (port, nil)
        }
        return nil
    }

    /// The port reserved under `token` (to bind the socket that holds it), nil if the token is gone.
    public func reservedPort(token: UInt64) -> (port: UInt16, ipv6: Bool)? {
        state.withLock { $0.reservations[token].map { ($0.port, $0.ipv6) } }
    }

    /// Keeps `socket`, bound to the reserved port of `token`, until the token is redeemed, cancelled or
    /// expires. false (the socket closed) when the token is gone meanwhile.
    public func attach(_ socket: CInt, to token: UInt64) -> Bool {
        let kept = state.withLock { s -> Bool in
            guard s.reservations[token] != nil else { return false }
            s.reservations[token]!.socket = socket
            return true
        }
        if !kept { closeSocket(socket) }
        return kept
    }

    /// Redeems a RESERVATION-TOKEN: the reserved port, which stays marked in use. nil if unknown or expired.
    public func redeem(token: UInt64) -> UInt16? {
        guard let r = redeemReservation(token: token) else { return nil }
        if let fd = r.socket { closeSocket(fd) }
        return r.port
    }

    /// The reserved port, the family it was reserved for, and the socket holding it, which the caller
    /// now owns (it becomes the new allocation's relay socket).
    public func redeemReservation(token: UInt64) -> (port: UInt16, ipv6: Bool, socket: CInt?)? {
        let now = clock()
        let (redeemed, expired) = state.withLock { s in
            let expired = Self.expireReservations(&s, now: now)
            return (s.reservations.removeValue(forKey: token).map { ($0.port, $0.ipv6, $0.socket) }, expired)
        }
        for fd in expired { closeSocket(fd) }
        return redeemed
    }

    /// Gives a reservation up (the allocation that made it failed): its port is free again.
    public func cancel(token: UInt64) {
        if let port = redeem(token: token) { release(port) }
    }

    /// Drops the reservations that have expired, closing their sockets (the sweep calls this; acquire
    /// and redeem do it too).
    public func expireReservations() {
        let now = clock()
        for fd in state.withLock({ Self.expireReservations(&$0, now: now) }) { closeSocket(fd) }
    }

    /// Gives up every reservation and closes its socket (the server is stopping).
    public func cancelAllReservations() {
        let sockets = state.withLock { s -> [CInt] in
            defer { s.reservations.removeAll() }
            for r in s.reservations.values { s.inUse.remove(r.port) }
            return s.reservations.values.compactMap(\.socket)
        }
        for fd in sockets { closeSocket(fd) }
    }

    /// Reservations currently held (for tests and stats).
    public var reservationCount: Int { state.withLock { $0.reservations.count } }

    public func release(_ port: UInt16) {
        _ = state.withLock { $0.inUse.remove(port) }
    }

    private static func expireReservations(_ s: inout State, now: Int64) -> [CInt] {
        var sockets: [CInt] = []
        for (token, r) in s.reservations where r.expires <= now {
            s.reservations.removeValue(forKey: token)
            s.inUse.remove(r.port)
            if let fd = r.socket { sockets.append(fd) }
        }
        return sockets
    }
}
