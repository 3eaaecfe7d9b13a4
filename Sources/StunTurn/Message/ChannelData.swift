import NIOCore

/// ChannelData framing (RFC 8656 §12.4): a 2-byte channel number (0x4000-0x4FFF by RFC 8656; RFC 5766's
/// 0x4000-0x7FFF are accepted too unless `turn.strict_channel_numbers`), a 2-byte length,
/// then the application data. Over TCP/TLS the frame is padded to a multiple of 4 bytes.
public enum ChannelData {
    /// RFC 8656 §12: channel numbers 0x4000-0x4FFF.
    public static let channelRange: ClosedRange<UInt16> = 0x4000...0x4FFF
    /// RFC 5766 §11 allowed 0x4000-0x7FFF; coturn's clients (and other RFC 5766-era stacks) still pick
    /// numbers up to 0x7FFF, so the server accepts this range unless configured strictly.
    public static let legacyChannelRange: ClosedRange<UInt16> = 0x4000...0x7FFF
    public static let headerLength = 4

    /// The first two bits 01 identify ChannelData (RFC 7983 demultiplexing puts 0x40-0x4F here).
    @inline(__always)
    public static func isChannelData(firstByte: UInt8) -> Bool { firstByte & 0xC0 == 0x40 }

    /// Parses a ChannelData datagram without copying: the payload is a slice of `buffer`. The channel
    /// number is not range-checked here: an unbound number finds no binding and is dropped.
    /// Over UDP the datagram may be longer than 4 + length (padding is allowed); shorter is an error.
    @inline(__always)
    public static func parse(_ buffer: ByteBuffer) -> (channel: UInt16, payload: ByteBuffer)? {
        guard let channel = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self),
              buffer.readableBytes >= 4 + Int(length),
              let payload = buffer.getSlice(at: buffer.readerIndex + 4, length: Int(length))
        else { return nil }
        return (channel, payload)
    }

    /// Writes header + payload (+ padding when `padded`) into `out`.
    @inline(__always)
    public static func write(channel: UInt16, payload: ByteBuffer, into out: inout ByteBuffer, padded: Bool) {
        out.writeInteger(channel)
        out.writeInteger(UInt16(truncatingIfNeeded: payload.readableBytes))
        var p = payload
        out.writeBuffer(&p)
        if padded {
            let pad = (4 - payload.readableBytes % 4) % 4
            if pad > 0 { out.writeRepeatingByte(0, count: pad) }
        }
    }
}
