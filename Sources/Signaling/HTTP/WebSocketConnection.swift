import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket

/// Runs one upgraded WebSocket: an inbound task that reassembles messages (bounded by
/// `maxMessageSize`) and feeds the session, and a writer task that drains the peer's queue. Whichever
/// ends first ends the other; then the hub forgets the connection.
enum WebSocketConnection {
    static func run(hub: SignalingHub, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                    room: String, requestHost: String, remote: String, channel: any Channel) async {
        guard let connection = hub.open(remote: remote, forceClose: { channel.close(promise: nil) }) else {
            try? await outbound.write(.text(ServerEvents.error(.serverFull, "the server is at its connection limit")))
            try? await outbound.close(.unknown(1013), reason: "server full")
            return
        }
        let session = SignalingSession(hub: hub, connection: connection, room: room, requestHost: requestHost)
        let closeGrace = hub.configuration.closeGrace
        let peerID: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                var session = session
                await readMessages(inbound, into: &session, maxSize: hub.configuration.maxMessageSize)
                return session.peerID
            }
            group.addTask {
                await writeMessages(connection, to: outbound)
                // Our close frame is out: give the client `closeGrace` to answer before we cut it off.
                try? await Task.sleep(for: closeGrace)
                return nil
            }
            var peerID: String?
            if let first = await group.next(), let id = first { peerID = id }
            group.cancelAll()
            for await r in group { if let id = r { peerID = id } }
            return peerID
        }
        connection.close(finalEvent: nil, reason: "connection closed")
        hub.closed(connection, peerID: peerID)
    }

    /// Collects frames into messages; a message over `maxSize` is discarded as it arrives (never
    /// buffered) and answered with `message_too_large`.
    static func readMessages(_ inbound: WebSocketInboundStream, into session: inout SignalingSession, maxSize: Int) async {
        var buffer: [UInt8] = []
        var isText = true
        var size = 0
        var iterator = inbound.makeAsyncIterator()
        while true {
            let next: WebSocketDataFrame?
            do { next = try await iterator.next() } catch { return }
            guard let frame = next else { return }
            switch frame.opcode {
            case .text, .binary:
                isText = frame.opcode == .text
                buffer.removeAll(keepingCapacity: buffer.capacity <= 4096)
                size = 0
            case .continuation:
                break
            }
            size += frame.data.readableBytes
            if size <= maxSize, isText { buffer.append(contentsOf: frame.data.readableBytesView) }
            guard frame.fin else { continue }
            if session.isClosing { continue }
            if size > maxSize {
                session.receivedTooLarge(size: size)
            } else if !isText {
                session.receivedBinary()
            } else {
                session.receivedText(buffer)
            }
        }
    }

    static func writeMessages(_ connection: PeerConnection, to outbound: WebSocketOutboundWriter) async {
        for await item in connection.outboundStream {
            switch item {
            case .text(let text):
                do { try await outbound.write(.text(text)) } catch { return }
            }
        }
        guard let request = connection.pendingClose, !Task.isCancelled else { return }
        if let e = request.finalEvent { try? await outbound.write(.text(e)) }
        let code: WebSocketErrorCode = request.reason == "slow consumer" ? .policyViolation : .normalClosure
        try? await outbound.close(code, reason: request.reason)
    }
}
