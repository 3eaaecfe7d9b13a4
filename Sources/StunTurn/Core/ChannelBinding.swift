import NIOCore

/// One channel binding (RFC 8656 §12): channel number ↔ peer transport address, 600 s lifetime.
struct ChannelBinding {
    let number: UInt16
    let peer: TransportAddress
    /// Precomputed NIO address, so relaying never builds one per packet.
    let peerSocketAddress: SocketAddress
    var expires: NIODeadline
}

/// Channel bindings of one allocation with O(1) lookups both ways and the RFC's rebinding rules.
struct ChannelBindingTable {
    private(set) var byNumber: [UInt16: ChannelBinding] = [:]
    private(set) var byPeer: [TransportAddress: UInt16] = [:]
    /// Expired bindings that may not be rebound differently for 5 more minutes (§12).
    private var cooling: [UInt16: (peer: TransportAddress, until: NIODeadline)] = [:]

    static let cooldown = TimeAmount.seconds(300)

    var count: Int { byNumber.count }

    /// Whether `number` is bound (a ChannelBind for it refreshes rather than adds).
    func has(_ number: UInt16) -> Bool { byNumber[number] != nil }

    /// §12.2 (server): 400 if the number is bound to another address, or the address to another
    /// number; otherwise create or refresh the binding.
    mutating func bind(_ number: UInt16, to peer: TransportAddress, socketAddress: SocketAddress,
                       until: NIODeadline, now: NIODeadline) -> StunError? {
        if let existing = byNumber[number], existing.peer != peer { return .badRequest }
        if let existing = byPeer[peer], existing != number { return .badRequest }
        if let c = cooling[number] {
            if c.until > now, c.peer != peer { return .badRequest }
            cooling.removeValue(forKey: number)
        }
        if cooling.contains(where: { $0.value.peer == peer && $0.value.until > now && $0.key != number }) {
            return .badRequest
        }
        byNumber[number] = ChannelBinding(number: number, peer: peer, peerSocketAddress: socketAddress, expires: until)
        byPeer[peer] = number
        return nil
    }

    @inline(__always)
    func binding(for number: UInt16, now: NIODeadline) -> ChannelBinding? {
        guard let b = byNumber[number], b.expires > now else { return nil }
        return b
    }

    @inline(__always)
    func channel(for peer: TransportAddress, now: NIODeadline) -> UInt16? {
        guard let n = byPeer[peer], let b = byNumber[n], b.expires > now else { return nil }
        return n
    }

    /// Removes the bindings to peers `refused` says (no cooldown: the peer is gone, not the number's
    /// meaning); returns how many.
    mutating func removeAll(where refused: (TransportAddress) -> Bool) -> Int {
        let gone = byNumber.values.filter { refused($0.peer) }
        for b in gone {
            byNumber.removeValue(forKey: b.number)
            byPeer.removeValue(forKey: b.peer)
        }
        return gone.count
    }

    mutating func expire(now: NIODeadline) {
        for (n, b) in byNumber where b.expires <= now {
            byNumber.removeValue(forKey: n)
            byPeer.removeValue(forKey: b.peer)
            cooling[n] = (b.peer, b.expires + Self.cooldown)
        }
        for (n, c) in cooling where c.until <= now { cooling.removeValue(forKey: n) }
    }
}
