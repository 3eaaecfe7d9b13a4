import Signaling
import Synchronization

/// What this instance knows of the others: each instance (its boot, its advert, when it was last heard
/// from) and the peers on it, by peer and by room. Built only from what the instances announce; an
/// instance's `state` replaces everything known of it, so a directory that missed events (a NATS outage)
/// is made whole by the next resync.
final class ClusterDirectory: Sendable {
    struct Instance: Sendable {
        var boot: String
        var started: Int64
        var advert: InstanceAdvert?
        var lastSeen: ContinuousClock.Instant
    }

    private struct State {
        var instances: [String: Instance] = [:]
        var peers: [String: RemotePeer] = [:]
        var rooms: [String: [String: RemotePeer]] = [:]
    }

    private let state = Mutex(State())

    /// What a change did to the directory, for the hub to tell its peers.
    struct Change {
        var joined: [RemotePeer] = []
        var left: [RemotePeer] = []
    }

    // MARK: Reads

    func peer(_ id: String) -> RemotePeer? { state.withLock { $0.peers[id] } }

    func peers(in room: String) -> [RemotePeer] { state.withLock { $0.rooms[room].map { Array($0.values) } ?? [] } }

    func peers(on instance: String) -> [RemotePeer] { state.withLock { $0.peers.values.filter { $0.instance == instance } } }

    func roomCounts() -> [String: Int] { state.withLock { $0.rooms.mapValues(\.count) } }

    var peerCount: Int { state.withLock { $0.peers.count } }

    func instances() -> [String: Instance] { state.withLock { $0.instances } }

    func instance(_ id: String) -> Instance? { state.withLock { $0.instances[id] } }

    // MARK: Changes

    /// Heard from `id` (any message): it is alive. A new boot of a known id replaces the old one's peers
    /// (the process restarted; its old peers are gone).
    func heard(from id: String, boot: String, started: Int64, advert: InstanceAdvert?, now: ContinuousClock.Instant) -> Change {
        state.withLock { s in
            var change = Change()
            if let known = s.instances[id], known.boot != boot, started >= known.started {
                change.left = Self.removePeers(of: id, in: &s)
            }
            var entry = s.instances[id] ?? Instance(boot: boot, started: started, advert: nil, lastSeen: now)
            if entry.boot != boot, started >= entry.started {
                entry = Instance(boot: boot, started: started, advert: nil, lastSeen: now)
            }
            entry.lastSeen = now
            if let advert { entry.advert = advert }
            s.instances[id] = entry
            return change
        }
    }

    func join(_ peer: RemotePeer) -> Change {
        state.withLock { s in
            if let old = s.peers[peer.info.peerID], old == peer { return Change() }
            s.peers[peer.info.peerID] = peer
            s.rooms[peer.room, default: [:]][peer.info.peerID] = peer
            return Change(joined: [peer])
        }
    }

    /// A peer moved to another instance (a resume there): it is reached there from now on; the rooms
    /// notice nothing.
    func move(_ peer: RemotePeer) {
        state.withLock { s in
            s.peers[peer.info.peerID] = peer
            s.rooms[peer.room, default: [:]][peer.info.peerID] = peer
        }
    }

    func leave(_ peerID: String) -> Change {
        state.withLock { s in
            guard let p = Self.remove(peerID, in: &s) else { return Change() }
            return Change(left: [p])
        }
    }

    /// `instance`'s whole presence: peers it no longer lists have left, new ones joined.
    func replace(instance: String, with peers: [RemotePeer]) -> Change {
        state.withLock { s in
            var change = Change()
            let listed = Set(peers.map(\.info.peerID))
            for p in s.peers.values where p.instance == instance && !listed.contains(p.info.peerID) {
                if let gone = Self.remove(p.info.peerID, in: &s) { change.left.append(gone) }
            }
            for p in peers where s.peers[p.info.peerID] != p {
                s.peers[p.info.peerID] = p
                s.rooms[p.room, default: [:]][p.info.peerID] = p
                change.joined.append(p)
            }
            return change
        }
    }

    /// Forgets `instance` and its peers (it said goodbye, or was declared dead).
    func forget(_ instance: String) -> Change {
        state.withLock { s in
            s.instances.removeValue(forKey: instance)
            return Change(left: Self.removePeers(of: instance, in: &s))
        }
    }

    /// Instances not heard from since `deadline`.
    func silent(since deadline: ContinuousClock.Instant) -> [String] {
        state.withLock { s in s.instances.filter { $0.value.lastSeen < deadline }.map(\.key) }
    }

    /// After this instance's own link came back: every instance gets a fresh `instance_timeout` to be heard
    /// from (nothing could be heard while the link was down).
    func restartClocks(now: ContinuousClock.Instant) {
        state.withLock { s in for k in s.instances.keys { s.instances[k]!.lastSeen = now } }
    }

    private static func removePeers(of instance: String, in s: inout State) -> [RemotePeer] {
        let ids = s.peers.values.filter { $0.instance == instance }.map(\.info.peerID)
        return ids.compactMap { remove($0, in: &s) }
    }

    private static func remove(_ peerID: String, in s: inout State) -> RemotePeer? {
        guard let p = s.peers.removeValue(forKey: peerID) else { return nil }
        s.rooms[p.room]?.removeValue(forKey: peerID)
        if s.rooms[p.room]?.isEmpty == true { s.rooms.removeValue(forKey: p.room) }
        return p
    }
}
