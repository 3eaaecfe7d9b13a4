import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process's open-file limit. Every signaling connection, TURN TCP/TLS connection and relay socket
/// is a descriptor, and a shell on a stock Linux box starts a process with a soft limit of 1 024 (the
/// hard limit is far higher), which would cap the server at about a thousand of them. So the soft limit
/// is raised to the hard one at start, as coturn and Go programs do; only an administrator (ulimit -Hn,
/// systemd's LimitNOFILE=) can raise the hard limit.
enum FileDescriptorLimit {
    struct Change: Equatable {
        let before: UInt64
        let after: UInt64
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit (to the kernel's nr_open where the hard limit is
    /// unlimited). Nil when the limit cannot be read.
    static func raiseToHard() -> Change? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        let before = UInt64(limit.rlim_cur)
        var target = limit.rlim_max
        if target == rlim_t.max { target = rlim_t(kernelMaximum() ?? before) }  // RLIM_INFINITY
        guard limit.rlim_cur < target else { return Change(before: before, after: before) }
        limit.rlim_cur = target
        guard setrlimit(resource, &limit) == 0 else { return Change(before: before, after: before) }
        return Change(before: before, after: UInt64(target))
    }

    /// Descriptors the configured limits can call for: one per signaling connection (nil when signaling
    /// is off) and per UDP allocation's relay socket, plus listeners and files. Nil when a limit in play
    /// is 0 (unlimited).
    static func needed(maxConnections: Int?, maxAllocations: Int) -> UInt64? {
        guard maxAllocations > 0, maxConnections != 0 else { return nil }
        return UInt64((maxConnections ?? 0) + maxAllocations + 100)
    }

    private static var resource: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }

    private static func kernelMaximum() -> UInt64? {
        (try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8))
            .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}
