import NIOCore
import NIOEmbedded
import NIOWebSocket
import SignalingTestSupport
import Testing
import TurnTestSupport
@testable import Signaling

/// A server frame read back: opcode and payload (server frames are unmasked).
func serverFrame(_ buffer: ByteBuffer) -> (opcode: UInt8, fin: Bool, payload: [UInt8])? {
    let b = Array(buffer.readableBytesView)
    guard b.count >= 2, b[1] & 0x80 == 0 else { return nil }
    var length = Int(b[1] & 0x7F), at = 2
    if length == 126 { length = Int(b[2]) << 8 | Int(b[3]); at = 4 } else if length == 127 {
        length = b[2..<10].reduce(0) { $0 << 8 | Int($1) }
        at = 10
    }
    guard b.count == at + length else { return nil }
    return (b[0] & 0x0F, b[0] & 0x80 != 0, Array(b[at...]))
}

/// What a `Reader` reported, in a comparable form (data frames reassembled into their unmasked bytes).
enum ReadFrameEvent: Equatable {
    case data(opcode: UInt8, fin: Bool, bytes: [UInt8])
    case control(opcode: UInt8, bytes: [UInt8])
}

func readFrames(_ chunks: [[UInt8]], maxFrameSize: Int = 1 << 20) throws(WebSocketFraming.ProtocolError) -> [ReadFrameEvent] {
    var reader = WebSocketFraming.Reader(maxFrameSize: maxFrameSize)
    var seen: [ReadFrameEvent] = []
    var current: (opcode: UInt8, bytes: [UInt8])?
    for chunk in chunks {
        var buffer = ByteBuffer(bytes: chunk)
        try reader.read(&buffer) { event in
            switch event {
            case .dataFrame(let opcode, _): current = (UInt8(webSocketOpcode: opcode), [])
            case .payload(let bytes, let key, let offset): WebSocketFraming.unmask(bytes, key: key, offset: offset, into: &current!.bytes)
            case .dataFrameEnd(let fin):
                seen.append(.data(opcode: current!.opcode, fin: fin, bytes: current!.bytes))
                current = nil
            case .control(let opcode, let payload):
                seen.append(.control(opcode: UInt8(webSocketOpcode: opcode), bytes: Array(payload.readableBytesView)))
            }
        }
    }
    return seen
}

@Suite struct WebSocketFramingTests {
    let hello = Array("hello".utf8)
    let medium = (0..<300).map { UInt8($0 & 0x7F) }

    var stream: [UInt8] {
        clientFrame(0x1, hello) + clientFrame(0x9, Array("p".utf8)) + clientFrame(0x1, medium, fin: false)
            + clientFrame(0x0, hello, key: [1, 2, 3, 4]) + clientFrame(0x2, [], forceLong: true)
    }

    var expected: [ReadFrameEvent] {
        [.data(opcode: 1, fin: true, bytes: hello), .control(opcode: 9, bytes: Array("p".utf8)),
         .data(opcode: 1, fin: false, bytes: medium), .data(opcode: 0, fin: true, bytes: hello),
         .data(opcode: 2, fin: true, bytes: [])]
    }

    @Test func framesInOneReadAreUnmaskedInOrder() throws {
        #expect(try readFrames([stream]) == expected)
    }

    @Test func framesSplitAtEveryByteReadTheSame() throws {
        #expect(try readFrames(stream.map { [$0] }) == expected)
        // And at every split point into two reads.
        for cut in 1..<stream.count {
            #expect(try readFrames([Array(stream[..<cut]), Array(stream[cut...])]) == expected, "cut at \(cut)")
        }
    }

    @Test func eachProtocolViolationIsRefusedWithItsCode() {
        let cases: [([UInt8], WebSocketErrorCode, String)] = [
            (clientFrame(0x1, hello, masked: false), .protocolError, "client frames must be masked"),
            (clientFrame(0x1, hello, firstByteExtra: 0x40), .protocolError, "reserved bits set"),
            (clientFrame(0x3, hello), .protocolError, "unknown opcode"),
            (clientFrame(0x9, [UInt8](repeating: 0, count: 126)), .protocolError, "control frame over 125 bytes"),
            (clientFrame(0x9, hello, fin: false), .protocolError, "fragmented control frame"),
            ([0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], .protocolError, "frame length over 2^63"),
            (clientFrame(0x1, [UInt8](repeating: 0x20, count: 2000)), .messageTooLarge, "frame over 1024 bytes"),
        ]
        for (bytes, code, reason) in cases {
            #expect(throws: WebSocketFraming.ProtocolError(code: code, reason: reason)) {
                try readFrames([bytes], maxFrameSize: 1024)
            }
        }
    }

    @Test func serverFramesUseTheShortestLengthAndTheHeadroom() {
        for n in [0, 125, 126, 65535, 65536] {
            let payload = [UInt8](repeating: 0x61, count: n)
            let framed = WebSocketFraming.frame(.text, ByteBuffer(bytes: payload))
            let decoded = serverFrame(framed)
            #expect(decoded?.opcode == 1 && decoded?.fin == true && decoded?.payload == payload, "\(n) bytes")
            #expect(framed.readableBytes == n + (n < 126 ? 2 : n <= 0xFFFF ? 4 : 10))
        }
        // A forwarded message carries room for its header: the frame is the same buffer, moved back.
        let forwarded = try! JSONEnvelope(#"{"event":"e","to":"x"}"#).forwarded(from: "me", headroom: PeerConnection.payloadHeadroom)
        let start = forwarded.readerIndex
        let framed = WebSocketFraming.frame(.text, forwarded)
        #expect(framed.readerIndex == start - 2)
        #expect(serverFrame(framed)?.payload == Array(forwarded.readableBytesView))
    }

    @Test func framingASharedBufferLeavesTheOtherCopyIntact() {
        let shared = try! JSONEnvelope(#"{"event":"e","to":"*"}"#).forwarded(from: "me", headroom: PeerConnection.payloadHeadroom)
        let before = Array(shared.readableBytesView)
        let a = WebSocketFraming.frame(.text, shared)
        let b = WebSocketFraming.frame(.text, shared)
        #expect(Array(shared.readableBytesView) == before)
        #expect(serverFrame(a)?.payload == before && serverFrame(b)?.payload == before)
    }

    /// The server end to end on a raw socket: a message split into single-byte writes arrives, and an
    /// unmasked frame gets a close frame with 1002.
    @Test func aRawClientIsReadByteByByteAndAnUnmaskedFrameIsClosedWith1002() async throws {
        try await withSignaling { _, port in
            let (s, head) = try #require(await rawWebSocket(port: port, path: "/websocket/raw"))
            #expect(head.hasPrefix("HTTP/1.1 101"))
            for byte in clientFrame(0x1, Array("ping".utf8)) { s.send([byte]) }
            #expect(await offPool { s.receive(count: 6) } == [0x81, 4] + Array("pong".utf8))
            s.send(clientFrame(0x1, Array("ping".utf8), masked: false))
            let close = try #require(await offPool { s.receive(count: 4) })
            #expect(close[0] == 0x88 && Int(close[2]) << 8 | Int(close[3]) == 1002)
        }
    }

    /// A message sent to a peer whose socket just went inactive (another loop's sender had already
    /// looked it up) is dropped. It once went to the channel instead, into NIO's frame encoder, which the
    /// upgrader leaves in the pipeline, and crashed the server on its ByteBuffer.
    @Test func aFrameForAConnectionThatWentInactiveIsDropped() throws {
        let hub = SignalingHub(configuration: SignalingConfiguration(), credentials: .init(.init()), logger: .init(label: "t"))
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
        let handler = SignalingFrameHandler(hub: hub, room: "r", requestHost: "h", clientAddress: nil, maxFrameSize: 1 << 20)
        try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        let conn = try #require(handler.connection)
        #expect(conn.send("before"))
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self).flatMap(serverFrame)?.payload == Array("before".utf8))
        channel.pipeline.fireChannelInactive()
        _ = conn.send("after")
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(hub.connectionCount == 0)
    }
}
