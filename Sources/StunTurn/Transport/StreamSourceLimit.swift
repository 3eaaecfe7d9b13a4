import Auth
import NIOCore
import Synchronization

/// Open TCP/TLS connections to the TURN listeners per source address (IPv6 by /64), across every event
/// loop; `turn.max_connections_per_source` caps them. Without a cap one address could hold thousands of
/// idle connections, each a descriptor, until `turn.stream_idle_timeout` closes them one by one.
final class StreamSourceCounter: Sendable {
    private let open = Mutex<[SourceKey: Int]>([:])

    /// Counts a new connection from `source`; false (not counted) when `limit` (> 0) are already open.
    func admit(_ source: SourceKey, limit: Int) -> Bool {
        open.withLock { table in
            let n = table[source, default: 0]
            if limit > 0, n >= limit { return false }
            table[source] = n + 1
            return true
        }
    }

    func release(_ source: SourceKey) {
        open.withLock { table in
            guard let n = table[source] else { return }
            if n <= 1 { table.removeValue(forKey: source) } else { table[source] = n - 1 }
        }
    }

    func count(_ source: SourceKey) -> Int { open.withLock { $0[source, default: 0] } }
}

/// First in a TCP/TLS connection's pipeline (before TLS): admits the connection under its source's cap,
/// or closes it at once and counts it; gives its place back when it closes.
final class StreamSourceLimitHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let shared: TurnShared
    private var admitted: SourceKey?

    init(shared: TurnShared) { self.shared = shared }

    func channelActive(context: ChannelHandlerContext) {
        guard let source = context.remoteAddress.flatMap(TransportAddress.init)?.ip.sourceKey else {
            context.fireChannelActive()
            return
        }
        guard shared.streamSources.admit(source, limit: shared.limits.current.maxStreamConnectionsPerSource) else {
            shared.stats.streamConnectionsRefused.add()
            context.close(promise: nil)
            return
        }
        admitted = source
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let admitted { shared.streamSources.release(admitted) }
        admitted = nil
        context.fireChannelInactive()
    }
}
