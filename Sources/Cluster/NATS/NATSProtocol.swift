import NIOCore

/// What a NATS server sends a client (the NATS client protocol: text control lines ending in CRLF, a
/// payload after MSG). Operation names are case-insensitive.
enum NATSServerOp: Equatable {
    case info(ByteBuffer)
    case msg(subject: String, sid: UInt64, reply: String?, payload: ByteBuffer)
    case ping
    case pong
    case ok
    case err(String)
}

enum NATSProtocolError: Error, Equatable {
    case lineTooLong
    case malformed(String)
}

/// Cuts the server's byte stream into operations. A MSG's payload is a slice of the read buffer, not a copy.
struct NATSServerOpDecoder: ByteToMessageDecoder {
    typealias InboundOut = NATSServerOp

    /// Control lines longer than this (INFO carries the cluster's URLs, so it is not tiny) are a broken
    /// server, and the connection is dropped rather than buffered for ever.
    static let maxControlLine = 1 << 20

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let op = try Self.parse(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(op))
        return .continue
    }

    /// One operation from the front of `buffer`, or nil (nothing consumed) when it is not complete yet.
    static func parse(_ buffer: inout ByteBuffer) throws -> NATSServerOp? {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > maxControlLine { throw NATSProtocolError.lineTooLong }
            return nil
        }
        let lineStart = view.startIndex
        var lineEnd = lf
        if lineEnd > lineStart, view[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        let line = view[lineStart..<lineEnd]
        let consumedLine = lf + 1 - lineStart
        // The operation name, up to the first space or tab.
        let nameEnd = line.firstIndex { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") } ?? line.endIndex
        let name = line[line.startIndex..<nameEnd]
        func named(_ s: StaticString) -> Bool {
            guard name.count == s.utf8CodeUnitCount else { return false }
            return zip(name, UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)).allSatisfy { a, b in
                a | 0x20 == b | 0x20
            }
        }
        let rest = line[nameEnd...].drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        if named("MSG") {
            let fields = rest.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
            guard fields.count == 3 || fields.count == 4,
                  let sid = UInt64(decimal: fields[1]), let length = Int(decimal: fields[fields.count - 1])
            else { throw NATSProtocolError.malformed("MSG " + String(decoding: rest, as: UTF8.self)) }
            // The payload and its CRLF must be there in full.
            guard buffer.readableBytes >= consumedLine + length + 2 else { return nil }
            let subject = String(decoding: fields[0], as: UTF8.self)
            let reply = fields.count == 4 ? String(decoding: fields[2], as: UTF8.self) : nil
            buffer.moveReaderIndex(forwardBy: consumedLine)
            let payload = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 2)
            return .msg(subject: subject, sid: sid, reply: reply, payload: payload)
        }
        let op: NATSServerOp
        if named("PING") {
            op = .ping
        } else if named("PONG") {
            op = .pong
        } else if named("+OK") {
            op = .ok
        } else if named("-ERR") {
            var text = String(decoding: rest, as: UTF8.self)
            if text.hasPrefix("'"), text.hasSuffix("'"), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
            op = .err(text)
        } else if named("INFO") {
            op = .info(ByteBuffer(bytes: rest))
        } else {
            throw NATSProtocolError.malformed(String(decoding: line.prefix(64), as: UTF8.self))
        }
        buffer.moveReaderIndex(forwardBy: consumedLine)
        return op
    }
}

extension UInt64 {
    init?<C: Collection>(decimal bytes: C) where C.Element == UInt8 {
        guard !bytes.isEmpty, bytes.count <= 19 else { return nil }
        var v: UInt64 = 0
        for b in bytes {
            guard b >= 0x30, b <= 0x39 else { return nil }
            v = v * 10 + UInt64(b - 0x30)
        }
        self = v
    }
}

extension Int {
    init?<C: Collection>(decimal bytes: C) where C.Element == UInt8 {
        guard let v = UInt64(decimal: bytes), v <= UInt64(Int.max) else { return nil }
        self = Int(v)
    }
}

/// What a client writes: control lines, and PUB with its payload, appended to one outbound buffer.
enum NATSClientOps {
    /// `PUB subject <size>\r\n<head><payload>\r\n`: one message whose payload is `head` then `payload`.
    static func pub(_ subject: String, head: String = "", payload: ByteBuffer, into out: inout ByteBuffer) {
        out.writeStaticString("PUB ")
        out.writeString(subject)
        out.writeStaticString(" ")
        writeDecimal(head.utf8.count + payload.readableBytes, into: &out)
        out.writeStaticString("\r\n")
        out.writeString(head)
        out.writeImmutableBuffer(payload)
        out.writeStaticString("\r\n")
    }

    /// `n` in decimal, without making a String.
    static func writeDecimal(_ n: Int, into out: inout ByteBuffer) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = n, count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[19 - count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            } while v > 0
            out.writeBytes(UnsafeRawBufferPointer(rebasing: d[(20 - count)...]))
        }
    }

    static func sub(_ subject: String, sid: UInt64, into out: inout ByteBuffer) {
        out.writeString("SUB \(subject) \(sid)\r\n")
    }

    static func unsub(sid: UInt64, into out: inout ByteBuffer) {
        out.writeString("UNSUB \(sid)\r\n")
    }

    /// A subject token: no whitespace, no wildcard, not empty (`.` separates tokens).
    static func isValidSubject(_ s: String, wildcards: Bool = false) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 256 else { return false }
        for token in s.split(separator: ".", omittingEmptySubsequences: false) {
            guard !token.isEmpty else { return false }
            if token.contains(where: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }) { return false }
            if !wildcards, token == "*" || token == ">" { return false }
        }
        return true
    }
}
