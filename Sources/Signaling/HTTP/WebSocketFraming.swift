import NIOCore
import NIOWebSocket

/// RFC 6455 §5.2 framing for the upgraded signaling socket, read and written straight on the
/// connection's bytes. It replaces NIO's frame decoder/encoder pair on this one path: with them, every
/// message went through a `ByteToMessageHandler`, a `WebSocketFrame` boxed in `NIOAny` in each
/// direction, and a second buffer (and iovec) for each outgoing frame header — about 12 % of the
/// server's CPU per message (BENCHMARKS.md). NIO still does the HTTP upgrade handshake.
enum WebSocketFraming {
    /// Why a connection's frames cannot be read; the connection is closed with `code`.
    struct ProtocolError: Error, Equatable {
        let code: WebSocketErrorCode
        let reason: String
    }

    /// Longest header of a server frame (unmasked): 2 bytes, plus 8 for a 64-bit length.
    static let maxServerHeader = 10

    /// `payload` as one server frame (unmasked, FIN set). The header goes into the free bytes in front
    /// of the payload when there are enough (`JSONEnvelope.forwarded` leaves them), otherwise into a new
    /// buffer with a copy of the payload: either way one contiguous buffer, one iovec per frame.
    static func frame(_ opcode: WebSocketOpcode, _ payload: consuming ByteBuffer) -> ByteBuffer {
        var payload = payload
        let n = payload.readableBytes
        let headerSize = n < 126 ? 2 : n <= 0xFFFF ? 4 : 10
        if payload.readerIndex >= headerSize {
            let start = payload.readerIndex - headerSize
            setHeader(opcode, length: n, in: &payload, at: start)
            payload.moveReaderIndex(to: start)
            return payload
        }
        var out = ByteBuffer()
        out.reserveCapacity(headerSize + n)
        out.moveWriterIndex(forwardBy: headerSize)
        setHeader(opcode, length: n, in: &out, at: 0)
        out.writeBuffer(&payload)
        return out
    }

    private static func setHeader(_ opcode: WebSocketOpcode, length n: Int, in buffer: inout ByteBuffer, at i: Int) {
        buffer.setInteger(0x80 | UInt8(webSocketOpcode: opcode), at: i)
        if n < 126 {
            buffer.setInteger(UInt8(n), at: i + 1)
        } else if n <= 0xFFFF {
            buffer.setInteger(UInt8(126), at: i + 1)
            buffer.setInteger(UInt16(n), at: i + 2)
        } else {
            buffer.setInteger(UInt8(127), at: i + 1)
            buffer.setInteger(UInt64(n), at: i + 2)
        }
    }

    /// What `Reader` finds in the bytes, in order.
    enum Event {
        /// A data frame (text, binary or continuation) starts; its payload follows as `payload` events.
        case dataFrame(opcode: WebSocketOpcode, fin: Bool)
        /// Masked payload bytes of the current data frame; `unmask(_:key:offset:into:)` appends them.
        case payload(ByteBufferView, key: WebSocketMaskingKey, offset: Int)
        /// The current data frame ended.
        case dataFrameEnd(fin: Bool)
        /// A whole control frame (close, ping, pong), unmasked (§5.5: at most 125 bytes, never fragmented).
        case control(opcode: WebSocketOpcode, payload: ByteBuffer)
    }

    /// Appends the masked `bytes` to `out`, unmasked; `offset` is their position within their frame.
    static func unmask(_ bytes: ByteBufferView, key: WebSocketMaskingKey, offset: Int, into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: bytes)
        out.withUnsafeMutableBufferPointer { b in
            for i in start..<b.count { b[i] ^= key[(offset + i - start) & 3] }
        }
    }

    /// Reads client frames incrementally: a data frame's payload is handed on as it arrives (a message
    /// over the size limit is counted as it streams past, never stored); only an incomplete header or
    /// control frame waits, copied, for the next read.
    struct Reader {
        /// Frames longer than this close the connection (1009).
        let maxFrameSize: Int
        private var partial = ByteBuffer()
        /// Payload bytes still to come in the current data frame, its mask, and how many came already.
        private var remaining = 0
        private var key: WebSocketMaskingKey = [0, 0, 0, 0]
        private var offset = 0
        private var fin = false

        init(maxFrameSize: Int) { self.maxFrameSize = maxFrameSize }

        mutating func read(_ bytes: inout ByteBuffer, _ handle: (Event) -> Void) throws(ProtocolError) {
            if partial.readableBytes > 0 {
                partial.writeBuffer(&bytes)
                var input = partial
                partial = ByteBuffer()
                try consume(&input, handle)
            } else {
                try consume(&bytes, handle)
            }
        }

        private mutating func consume(_ input: inout ByteBuffer, _ handle: (Event) -> Void) throws(ProtocolError) {
            while input.readableBytes > 0 {
                if remaining > 0 {
                    let n = min(remaining, input.readableBytes)
                    handle(.payload(input.readableBytesView.prefix(n), key: key, offset: offset))
                    input.moveReaderIndex(forwardBy: n)
                    offset += n
                    remaining -= n
                    if remaining == 0 { handle(.dataFrameEnd(fin: fin)) }
                    continue
                }
                guard let header = try Header(input) else { return keep(input) }
                if header.isControl {
                    guard input.readableBytes >= header.size + header.length else { return keep(input) }
                    input.moveReaderIndex(forwardBy: header.size)
                    var payload = input.readSlice(length: header.length)!
                    payload.webSocketUnmask(header.key)
                    handle(.control(opcode: header.opcode, payload: payload))
                    continue
                }
                guard header.length <= maxFrameSize else {
                    throw ProtocolError(code: .messageTooLarge, reason: "frame over \(maxFrameSize) bytes")
                }
                input.moveReaderIndex(forwardBy: header.size)
                remaining = header.length
                key = header.key
                offset = 0
                fin = header.fin
                handle(.dataFrame(opcode: header.opcode, fin: header.fin))
                if remaining == 0 { handle(.dataFrameEnd(fin: fin)) }
            }
        }

        /// Keeps the bytes of an incomplete header or control frame (at most 14 + 125) for the next read.
        private mutating func keep(_ input: ByteBuffer) {
            var rest = input
            partial.clear()
            partial.writeBuffer(&rest)
        }
    }

    /// A client frame's header (§5.2), checked: no reserved bits (no extension is negotiated), a known
    /// opcode, masked (§5.1), control frames unfragmented and at most 125 bytes (§5.5), and a 64-bit
    /// length with its top bit clear.
    struct Header {
        let fin: Bool
        let opcode: WebSocketOpcode
        let length: Int
        let key: WebSocketMaskingKey
        /// Header bytes, including the masking key.
        let size: Int
        var isControl: Bool { opcode.isControlOpcode }

        /// nil when `bytes` do not hold the whole header yet.
        init?(_ bytes: ByteBuffer) throws(ProtocolError) {
            let i = bytes.readerIndex
            guard let b0 = bytes.getInteger(at: i, as: UInt8.self),
                  let b1 = bytes.getInteger(at: i + 1, as: UInt8.self) else { return nil }
            guard b0 & 0x70 == 0 else { throw ProtocolError(code: .protocolError, reason: "reserved bits set") }
            // Continuation, text, binary, close, ping, pong; the others are reserved (§5.2).
            let raw = b0 & 0x0F
            guard raw <= 0x2 || (0x8...0xA).contains(raw), let opcode = WebSocketOpcode(encodedWebSocketOpcode: raw)
            else { throw ProtocolError(code: .protocolError, reason: "unknown opcode") }
            guard b1 & 0x80 != 0 else { throw ProtocolError(code: .protocolError, reason: "client frames must be masked") }
            let fin = b0 & 0x80 != 0
            var length = Int(b1 & 0x7F)
            var size = 2
            if length == 126 {
                guard let l = bytes.getInteger(at: i + 2, as: UInt16.self) else { return nil }
                length = Int(l)
                size = 4
            } else if length == 127 {
                guard let l = bytes.getInteger(at: i + 2, as: UInt64.self) else { return nil }
                guard l >> 63 == 0 else { throw ProtocolError(code: .protocolError, reason: "frame length over 2^63") }
                length = Int(l)
                size = 10
            }
            if opcode.isControlOpcode {
                guard fin else { throw ProtocolError(code: .protocolError, reason: "fragmented control frame") }
                guard length <= 125 else { throw ProtocolError(code: .protocolError, reason: "control frame over 125 bytes") }
            }
            guard let k = bytes.getBytes(at: i + size, length: 4) else { return nil }
            self.fin = fin
            self.opcode = opcode
            self.length = length
            self.key = WebSocketMaskingKey(k)!
            self.size = size + 4
        }
    }
}
