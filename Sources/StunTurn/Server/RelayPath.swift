import NIOCore

/// The data path. Runs on the allocation's event loop: no task, actor hop or lock per packet, O(1)
/// lookups (5-tuple → allocation, channel → peer, peer IP → permission), payloads sliced not copied on
/// the way out, writes flushed once per read batch.
extension TurnEngine {
    /// RFC 8656 §12.5: "If the ChannelData message is received on a channel that is not bound to any
    /// peer, then the message is silently discarded." Otherwise the data goes to the bound peer in a
    /// UDP datagram from the relayed transport address.
    @inline(__always)
    func relayChannelData(_ buffer: ByteBuffer, context: RequestContext) {
        guard let (number, payload) = ChannelData.parse(buffer) else {
            stats.add(stats.malformedDropped)
            return
        }
        guard let allocation = allocations[context.fiveTuple],
              let binding = allocation.channels.binding(for: number, now: .now())
        else {
            stats.add(stats.unroutableDropped)
            return
        }
        sendToPeer(allocation, payload, binding.peerSocketAddress)
    }

    /// RFC 8656 §11.2: a Send indication needs XOR-PEER-ADDRESS and DATA, and a permission for the
    /// peer's IP; otherwise it is silently discarded (indications are never answered).
    func handleSend(_ m: StunMessage, _ context: RequestContext) {
        guard let allocation = allocations[context.fiveTuple],
              let peer = m.xorAddress(AttributeType.xorPeerAddress),
              let data = m.data
        else {
            stats.add(stats.unroutableDropped)
            return
        }
        guard allocation.permissions.permits(peer.ip, now: .now()) else {
            stats.add(stats.unroutableDropped)
            return
        }
        guard configuration.peerPolicy.permits(peer.ip) else {
            stats.add(stats.peerPolicyRejections)
            return
        }
        let target = allocation.channels.byPeer[peer].flatMap { allocation.channels.byNumber[$0]?.peerSocketAddress }
            ?? peer.socketAddress()
        sendToPeer(allocation, allocation.relayChannel.allocator.buffer(bytes: data), target)
    }

    @inline(__always)
    func sendToPeer(_ allocation: Allocation, _ payload: ByteBuffer, _ peer: SocketAddress) {
        stats.add(stats.packetsToPeer)
        stats.add(stats.bytesToPeer, payload.readableBytes)
        allocation.relayChannel.write(AddressedEnvelope(remoteAddress: peer, data: payload), promise: nil)
        if !allocation.relayNeedsFlush {
            allocation.relayNeedsFlush = true
            dirtyRelays.append(allocation)
        }
    }

    /// RFC 8656 §11.3 (and §12.6): data from a peer is relayed only if a permission exists for its IP;
    /// over a bound channel as ChannelData, otherwise as a Data indication with XOR-PEER-ADDRESS and DATA.
    @inline(__always)
    func relayFromPeer(_ allocation: Allocation, _ envelope: AddressedEnvelope<ByteBuffer>) {
        guard let peer = TransportAddress(envelope.remoteAddress) else { return }
        let now = NIODeadline.now()
        guard allocation.permissions.permits(peer.ip, now: now) else {
            stats.add(stats.unroutableDropped)
            return
        }
        let payload = envelope.data
        var out: ByteBuffer
        if let number = allocation.channels.channel(for: peer, now: now) {
            out = allocation.relayChannel.allocator.buffer(capacity: 4 + payload.readableBytes)
            ChannelData.write(channel: number, payload: payload, into: &out, padded: false)
        } else {
            out = DataIndication.encode(peer: peer, payload: payload, allocator: allocation.relayChannel.allocator)
        }
        stats.add(stats.packetsToClient)
        stats.add(stats.bytesToClient, payload.readableBytes)
        allocation.clientPath.write(out)
    }
}

/// A Data indication (RFC 8656 §11.4) written straight into a buffer, without building a StunMessage.
enum DataIndication {
    static func encode(peer: TransportAddress, payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        let tid = TransactionID.random()
        let address = AddressAttribute.encodeXor(peer, transactionID: tid)
        let dataLength = payload.readableBytes
        let padding = (4 - dataLength % 4) % 4
        let bodyLength = 4 + address.count + 4 + dataLength + padding
        var out = allocator.buffer(capacity: 20 + bodyLength)
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
        var p = payload
        out.writeBuffer(&p)
        if padding > 0 { out.writeRepeatingByte(0, count: padding) }
        return out
    }
}
