import Synchronization

/// CONNECTION-IDs of every engine (a data connection may land on another event loop than its peer
/// connection). Ids are random, non-zero and unique among live connections.
final class TCPConnectionRegistry: Sendable {
    private let connections = Mutex<[UInt32: PeerTCPConnection]>([:])

    func register(_ make: (UInt32) -> PeerTCPConnection) -> PeerTCPConnection {
        connections.withLock { all in
            var id = UInt32.random(in: 1...UInt32.max)
            while all[id] != nil { id = UInt32.random(in: 1...UInt32.max) }
            let c = make(id)
            all[id] = c
            return c
        }
    }

    func lookup(_ id: UInt32) -> PeerTCPConnection? { connections.withLock { $0[id] } }

    /// Takes the connection for binding: a second ConnectionBind for the same id finds nothing.
    func claim(_ id: UInt32) -> PeerTCPConnection? {
        connections.withLock { all in
            guard let c = all[id], c.claim() else { return nil }
            return c
        }
    }

    func remove(_ id: UInt32) { connections.withLock { _ = $0.removeValue(forKey: id) } }
}
