import NIOCore

/// The data path. Runs on the allocation's event loop: no task, actor hop or lock per packet, O(1)
/// lookups (5-tuple → allocation, channel → peer, peer IP → permission), payloads sliced and copied once, into
/// the writer's arena, on the way out, writes sent together at the end of the event-loop tick (`DatagramWriter`).
extension TurnEngine {
    /// RFC 8656 §12.5: "If the ChannelData message is received on a channel that is not bound to any
    /// peer, then the message is silently discarded." Otherwise the data goes to the bound peer in a
    /// UDP datagram from the relayed transport address.
    @inline(__always)
    func relayChannelData(_ buffer: ByteBuffer, from fiveTuple: FiveTuple) {
        guard let (number, payload) = ChannelData.parse(buffer) else {
            stats.malformedDropped.add()
            return
        }
        guard let allocation = allocations[fiveTuple],
              let binding = allocation.channels.binding(for: number, now: .now())
        else {
            stats.unroutableDropped.add()
            return
        }
        sendToPeer(allocation, payload, binding.peer, binding.peerSocketAddress)
    }

    /// RFC 8656 §11.2: a Send indication needs XOR-PEER-ADDRESS and DATA, and a permission for the
    /// peer's IP; otherwise it is silently discarded (indications are never answered).
    func handleSend(_ m: StunMessage, _ context: RequestContext) {
        guard let allocation = allocations[context.fiveTuple],
              let peer = m.xorAddress(AttributeType.xorPeerAddress),
              let data = m.data
        else {
            stats.unroutableDropped.add()
            return
        }
        guard allocation.permissions.permits(peer.ip, now: .now()) else {
            stats.unroutableDropped.add()
            return
        }
        guard limits.peerPolicy.permits(peer) else {
            stats.peerPolicyRejections.add()
            return
        }
        let target = allocation.channels.byPeer[peer].flatMap { allocation.channels.byNumber[$0]?.peerSocketAddress }
            ?? peer.socketAddress()
        sendToPeer(allocation, allocation.relayChannel.allocator.buffer(bytes: data), peer, target)
    }

    @inline(__always)
    func sendToPeer(_ allocation: Allocation, _ payload: ByteBuffer, _ peer: TransportAddress, _ address: SocketAddress) {
        // RFC 6062: a TCP allocation relays over its peer connections only; Send and ChannelData are dropped.
        guard allocation.tcpListener == nil else {
            stats.unroutableDropped.add()
            return
        }
        let n = payload.readableBytes
        if limits.bandwidthLimit > 0, !allocation.bandwidth.take(n, limit: limits.bandwidthLimit, now: .now()) {
            dropOverCap(n)
            return
        }
        stats.toPeer.add(allocation.fiveTuple.transport, bytes: n)
        allocation.bytesToPeer &+= n
        // A dual allocation sends to a peer of the other family from its second relay socket.
        if let additional = allocation.additional, peer.ip.isIPv6 == additional.relayedAddress.ip.isIPv6 {
            additional.channel.writeDatagram(AddressedEnvelope(remoteAddress: address, data: payload))
            scheduleClientFlush(additional.channel)
            return
        }
        allocation.toPeer.add(payload, to: peer, address, gso: gso, socket: allocation.relaySocket)
        if !allocation.relayNeedsFlush {
            allocation.relayNeedsFlush = true
            dirtyRelays.append(allocation)
        }
    }

    /// RFC 8656 §11.3 (and §12.6): data from a peer is relayed only if a permission exists for its IP;
    /// over a bound channel as ChannelData, otherwise as a Data indication with XOR-PEER-ADDRESS and DATA.
    @inline(__always)
    func relayFromPeer(_ allocation: Allocation, from peer: TransportAddress, _ payload: ByteBuffer) {
        let now = NIODeadline.now()
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
            allocation.toClient.add(length: 4 + payload.readableBytes, to: client, clientAddress, gso: gso, socket: clientSocket) {
                ChannelData.write(channel: number, payload: payload, into: &$0, padded: false)
            }
        } else {
            allocation.toClient.add(length: DataIndication.length(peer: peer, payloadLength: payload.readableBytes), to: client,
                                    clientAddress, gso: gso, socket: clientSocket) {
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
    /// written on the connection and flushed with the other clients' writes at the end of the tick.
    func relayFromPeerOverStream(_ allocation: Allocation, peer: TransportAddress, payload: ByteBuffer, now: NIODeadline) {
        let channel = allocation.clientPath.channel
        var out: ByteBuffer
        if let number = allocation.channels.channel(for: peer, now: now) {
            out = channel.allocator.buffer(capacity: 4 + payload.readableBytes + 3)
            ChannelData.write(channel: number, payload: payload, into: &out, padded: true)
        } else {
            out = channel.allocator.buffer(capacity: DataIndication.length(peer: peer, payloadLength: payload.readableBytes))
            DataIndication.write(peer: peer, payload: payload, into: &out)
        }
        channel.write(out, promise: nil)
        scheduleClientFlush(channel)
        stats.toClient.add(allocation.fiveTuple.transport, bytes: payload.readableBytes)
    }

    /// End of a relay socket's read batch: queue what was gathered for the client. The writer is
    /// flushed once after every socket that was readable in this event-loop tick has been read, so
    /// packets relayed from many allocations leave in one `sendmmsg`.
    @inline(__always)
    func queueToClient(_ allocation: Allocation) {
        guard !allocation.toClient.isEmpty, case .datagram(let socket, _) = allocation.clientPath else { return }
        allocation.toClient.emit(socket)
        scheduleTickFlush()
    }

    /// Flushes `channel` (a TCP/TLS client's connection, a dual allocation's IPv6 relay socket) once,
    /// after every socket readable in this event-loop tick has been read.
    @inline(__always)
    func scheduleClientFlush(_ channel: Channel) {
        if !dirtyClientChannels.contains(where: { $0 === channel }) { dirtyClientChannels.append(channel) }
        scheduleTickFlush()
    }

    /// At the end of this event-loop tick: send what the writer holds, flush the channels written to.
    @inline(__always)
    func scheduleTickFlush() {
        guard !tickFlushScheduled else { return }
        tickFlushScheduled = true
        eventLoop.execute { [self] in
            tickFlushScheduled = false
            writer.flush()
            for c in dirtyClientChannels { c.flush() }
            dirtyClientChannels.removeAll(keepingCapacity: true)
        }
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
