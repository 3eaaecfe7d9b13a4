import NIOCore

/// The data path. Runs on the allocation's event loop: no task, actor hop or lock per packet, O(1)
/// lookups (5-tuple → allocation, channel → peer, peer IP → permission), payloads sliced and copied once,
/// into the sink, on the way out; datagrams to one destination coalesced over a read batch.
extension TurnCore {
    /// RFC 8656 §12.5: "If the ChannelData message is received on a channel that is not bound to any
    /// peer, then the message is silently discarded." Otherwise the data goes to the bound peer in a
    /// UDP datagram from the relayed transport address.
    @inline(__always)
    func relayChannelData(_ buffer: ByteBuffer, from fiveTuple: FiveTuple) {
        guard let (number, payload) = ChannelData.parse(buffer) else {
            stats.malformedDropped.add()
            return
        }
        guard let allocation = manager.allocations[fiveTuple],
              let binding = allocation.channels.binding(for: number, now: clock.now())
        else {
            stats.unroutableDropped.add()
            return
        }
        sendToPeer(allocation, payload, binding.peer, binding.peerSocketAddress)
    }

    /// RFC 8656 §11.2: a Send indication needs XOR-PEER-ADDRESS and DATA, and a permission for the
    /// peer's IP; otherwise it is silently discarded (indications are never answered).
    func handleSend(_ m: StunMessage, _ request: RequestInfo) {
        guard let allocation = manager.allocations[request.fiveTuple],
              let peer = m.xorAddress(AttributeType.xorPeerAddress),
              let data = m.data
        else {
            stats.unroutableDropped.add()
            return
        }
        guard allocation.permissions.permits(peer.ip, now: clock.now()) else {
            stats.unroutableDropped.add()
            return
        }
        guard limits.peerPolicy.permits(peer) else {
            stats.peerPolicyRejections.add()
            return
        }
        let target = allocation.channels.byPeer[peer].flatMap { allocation.channels.byNumber[$0]?.peerSocketAddress }
            ?? peer.socketAddress()
        sendToPeer(allocation, allocator.buffer(bytes: data), peer, target)
    }

    @inline(__always)
    func sendToPeer(_ allocation: Allocation, _ payload: ByteBuffer, _ peer: TransportAddress, _ address: SocketAddress) {
        // RFC 6062: a TCP allocation relays over its peer connections only; Send and ChannelData are dropped.
        guard !allocation.isTCP else {
            stats.unroutableDropped.add()
            return
        }
        let n = payload.readableBytes
        if limits.bandwidthLimit > 0, !allocation.bandwidth.take(n, limit: limits.bandwidthLimit, now: clock.now()) {
            dropOverCap(n)
            return
        }
        stats.toPeer.add(allocation.fiveTuple.transport, bytes: n)
        allocation.bytesToPeer &+= n
        // A dual allocation sends to a peer of the other family from its second relay socket.
        if let additional = allocation.additional, peer.ip.isIPv6 == additional.relayedAddress.ip.isIPv6 {
            sink.enqueue(payload, to: address, from: additional.socket, segmentSize: 0)
            return
        }
        allocation.toPeer.add(payload, to: peer, address, gso: gso, socket: allocation.relaySocket, sink: sink, allocator: allocator)
        if !allocation.relayNeedsFlush {
            allocation.relayNeedsFlush = true
            dirtyRelays.append(allocation)
        }
    }

    /// RFC 8656 §11.3 (and §12.6): data from a peer is relayed only if a permission exists for its IP;
    /// over a bound channel as ChannelData, otherwise as a Data indication with XOR-PEER-ADDRESS and DATA.
    @inline(__always)
    func relayFromPeer(_ allocation: Allocation, from peer: TransportAddress, _ payload: ByteBuffer) {
        let now = clock.now()
        guard allocation.permissions.permits(peer.ip, now: now) else {
            stats.unroutableDropped.add()
            return
        }
        if limits.bandwidthLimit > 0, !allocation.bandwidth.take(payload.readableBytes, limit: limits.bandwidthLimit, now: now) {
            dropOverCap(payload.readableBytes)
            return
        }
        allocation.bytesToClient &+= payload.readableBytes
        guard case .datagram(let clientSocket, let clientAddress) = allocation.clientPath else {
            relayFromPeerOverStream(allocation, peer: peer, payload: payload, now: now)
            return
        }
        let client = allocation.fiveTuple.client
        if let number = allocation.channels.channel(for: peer, now: now) {
            allocation.toClient.add(length: 4 + payload.readableBytes, to: client, clientAddress, gso: gso, socket: clientSocket,
                                    sink: sink, allocator: allocator) {
                ChannelData.write(channel: number, payload: payload, into: &$0, padded: false)
            }
        } else {
            allocation.toClient.add(length: DataIndication.length(peer: peer, payloadLength: payload.readableBytes), to: client,
                                    clientAddress, gso: gso, socket: clientSocket, sink: sink, allocator: allocator) {
                DataIndication.write(peer: peer, payload: payload, into: &$0)
            }
        }
        stats.toClient.add(.udp, bytes: payload.readableBytes)
    }

    /// Counts a packet dropped over the allocation's bandwidth cap.
    func dropOverCap(_ bytes: Int) {
        stats.bandwidthDropped.add()
        stats.bandwidthDroppedBytes.add(bytes)
    }

    /// The same for a client on TCP/TLS: ChannelData padded to four bytes (§12.5) or a Data indication,
    /// written on the connection (which goes out at the end of the event-loop tick).
    func relayFromPeerOverStream(_ allocation: Allocation, peer: TransportAddress, payload: ByteBuffer, now: NIODeadline) {
        guard case .stream(let link) = allocation.clientPath else { return }
        var out: ByteBuffer
        if let number = allocation.channels.channel(for: peer, now: now) {
            out = allocator.buffer(capacity: 4 + payload.readableBytes + 3)
            ChannelData.write(channel: number, payload: payload, into: &out, padded: true)
        } else {
            out = allocator.buffer(capacity: DataIndication.length(peer: peer, payloadLength: payload.readableBytes))
            DataIndication.write(peer: peer, payload: payload, into: &out)
        }
        link.write(out)
        stats.toClient.add(allocation.fiveTuple.transport, bytes: payload.readableBytes)
    }

    /// End of a relay socket's read batch: what was gathered for the client goes to the sink.
    @inline(__always)
    func endOfRelayBatch(_ allocation: Allocation) {
        guard !allocation.toClient.isEmpty, case .datagram(let socket, _) = allocation.clientPath else { return }
        allocation.toClient.emit(socket, sink: sink)
    }

    /// End of a listener's read batch: what it gathered for peers (a GSO run per relay socket where the
    /// batch allows) goes to the sink.
    @inline(__always)
    func endOfReadBatch() {
        guard !dirtyRelays.isEmpty else { return }
        for a in dirtyRelays {
            a.relayNeedsFlush = false
            a.toPeer.emit(a.relaySocket, sink: sink)
        }
        dirtyRelays.removeAll(keepingCapacity: true)
    }
}

/// A Data indication (RFC 8656 §11.4) written straight into a buffer, without building a StunMessage.
enum DataIndication {
    static func length(peer: TransportAddress, payloadLength: Int) -> Int {
        20 + 4 + (peer.ip.isIPv6 ? 20 : 8) + 4 + payloadLength + (4 - payloadLength % 4) % 4
    }

    static func write(peer: TransportAddress, payload: ByteBuffer, into out: inout ByteBuffer) {
        let tid = TransactionID.random()
        let address = AddressAttribute.encodeXor(peer, transactionID: tid)
        let dataLength = payload.readableBytes
        let padding = (4 - dataLength % 4) % 4
        let bodyLength = 4 + address.count + 4 + dataLength + padding
        out.writeInteger(StunMessage.encodeType(.data, .indication))
        out.writeInteger(UInt16(bodyLength))
        out.writeInteger(stunMagicCookie)
        out.writeInteger(tid.bytes.0)
        out.writeInteger(tid.bytes.1)
        out.writeInteger(tid.bytes.2)
        out.writeInteger(AttributeType.xorPeerAddress)
        out.writeInteger(UInt16(address.count))
        out.writeBytes(address)
        out.writeInteger(AttributeType.data)
        out.writeInteger(UInt16(dataLength))
        out.writeImmutableBuffer(payload)
        if padding > 0 { out.writeRepeatingByte(0, count: padding) }
    }

    static func encode(peer: TransportAddress, payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: length(peer: peer, payloadLength: payload.readableBytes))
        write(peer: peer, payload: payload, into: &out)
        return out
    }
}
