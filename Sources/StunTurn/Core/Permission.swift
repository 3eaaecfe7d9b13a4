import NIOCore

/// Permissions of one allocation (RFC 8656 §9): keyed by peer IP only (ports are ignored), each with
/// its own expiry (300 s, refreshed by CreatePermission or ChannelBind).
struct PermissionTable {
    private(set) var expiries: [IPAddress: NIODeadline] = [:]

    var count: Int { expiries.count }

    mutating func install(_ ip: IPAddress, until: NIODeadline) {
        expiries[ip] = until
    }

    /// §9: "the permission's time-to-expiry" has not passed.
    @inline(__always)
    func permits(_ ip: IPAddress, now: NIODeadline) -> Bool {
        guard let e = expiries[ip] else { return false }
        return e > now
    }

    func contains(_ ip: IPAddress) -> Bool { expiries[ip] != nil }

    /// Removes the permissions for IPs `refused` says; returns how many.
    mutating func removeAll(where refused: (IPAddress) -> Bool) -> Int {
        let gone = expiries.keys.filter(refused)
        for ip in gone { expiries.removeValue(forKey: ip) }
        return gone.count
    }

    mutating func expire(now: NIODeadline) {
        for (ip, e) in expiries where e <= now { expiries.removeValue(forKey: ip) }
    }
}
