import NIOCore
import NIOEmbedded
import Testing
@testable import StunTurn

/// STUN and ChannelData framing on TCP/TLS streams (RFC 8656 §12.5), on an embedded channel.
@Suite struct StreamFramingTests {
    func stunBytes(_ attributes: Int = 1) -> [UInt8] {
        var m = StunMessage(method: .binding, messageClass: .request)
        for _ in 0..<attributes { m.appendText(AttributeType.software, "abc") }
        return m.encode()
    }

    func channelData(_ payload: [UInt8]) -> [UInt8] {
        var out = ByteBuffer()
        ChannelData.write(channel: 0x4001, payload: ByteBuffer(bytes: payload), into: &out, padded: true)
        return Array(out.readableBytesView)
    }

    func framer(timeout: TimeAmount = .seconds(10)) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(StunStreamFramer(incompleteTimeout: timeout))
        return channel
    }

    func frames(_ channel: EmbeddedChannel) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let b = try channel.readInbound(as: ByteBuffer.self) { out.append(Array(b.readableBytesView)) }
        return out
    }

    @Test func messagesSplitAcrossReadsAreReassembled() throws {
        let channel = try framer()
        let stun = stunBytes(3)
        for i in stride(from: 0, to: stun.count, by: 5) {
            try channel.writeInbound(ByteBuffer(bytes: stun[i..<min(i + 5, stun.count)]))
        }
        #expect(try frames(channel) == [stun])
    }

    @Test func severalMessagesInOneReadComeOutOneByOneWithChannelDataPadding() throws {
        let channel = try framer()
        let a = stunBytes(), b = channelData([1, 2, 3, 4, 5]), c = stunBytes(2)
        #expect(b.count == 12)  // 4 header + 5 data + 3 padding
        try channel.writeInbound(ByteBuffer(bytes: a + b + c + Array(c.prefix(7))))
        #expect(try frames(channel) == [a, b, c])
        try channel.writeInbound(ByteBuffer(bytes: Array(c.dropFirst(7))))
        #expect(try frames(channel) == [c])
    }

    @Test(arguments: [[0x80, 0, 0, 4], [0xC0, 1, 0, 0], [0x00, 1, 0, 5]])
    func bytesThatAreNeitherStunNorChannelDataCloseTheConnection(_ header: [UInt8]) throws {
        let channel = try framer()
        try channel.writeInbound(ByteBuffer(bytes: header + [UInt8](repeating: 0, count: 40)))
        #expect(try frames(channel).isEmpty)
        #expect(!channel.isActive)
    }

    @Test func aMessageLeftIncompleteIsClosedAfterTheTimeoutAndProgressResetsTheClock() throws {
        let channel = try framer(timeout: .seconds(10))
        _ = try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let stun = stunBytes(4)
        try channel.writeInbound(ByteBuffer(bytes: stun + Array(stun.prefix(10))))
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        try channel.writeInbound(ByteBuffer(bytes: Array(stun.dropFirst(10)) + Array(stun.prefix(3))))  // progress
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(channel.isActive)
        #expect(try frames(channel).count == 2)
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))  // 11 s without finishing the third
        #expect(!channel.isActive)
    }

    @Test func streamPathPadsChannelDataToFourBytes() throws {
        let link = MemoryStreamLink()
        var unpadded = ByteBuffer()
        ChannelData.write(channel: 0x4000, payload: ByteBuffer(bytes: [9, 9, 9]), into: &unpadded, padded: false)
        ClientPath.stream(link).write(unpadded, sink: MemoryDatagramSink())
        #expect(link.take() == [[0x40, 0x00, 0x00, 0x03, 9, 9, 9, 0]])
    }
}
