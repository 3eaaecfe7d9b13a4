import NIOCore

/// Cuts a TCP or TLS byte stream into STUN messages and ChannelData messages (RFC 8656 §12.5, RFC 7983:
/// the first two bits tell them apart). A STUN message is 20 bytes of header plus its length; ChannelData
/// is 4 bytes plus its length, padded to a multiple of four on streams. A read may split a message or
/// carry several.
///
/// A stream cannot be resynchronised, so anything else (first bits 10/11, a STUN length that is not a
/// multiple of four) closes the connection; so does a message left incomplete for longer than
/// `incompleteTimeout` (a client that starts a message and never finishes it does not hold a
/// connection and its buffer forever).
final class StunStreamFramer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum FramingError: Error, Equatable {
        case notStunOrChannelData(firstByte: UInt8)
        case badStunLength(Int)
    }

    let incompleteTimeout: TimeAmount
    let onError: (FramingError) -> Void
    private var buffer: ByteBuffer?
    private var timer: Scheduled<Void>?

    init(incompleteTimeout: TimeAmount, onError: @escaping (FramingError) -> Void = { _ in }) {
        self.incompleteTimeout = incompleteTimeout
        self.onError = onError
    }

    /// The whole frame's length if `buffer` starts with a complete header, nil if more bytes are needed.
    static func frameLength(_ buffer: ByteBuffer) throws(FramingError) -> Int? {
        guard buffer.readableBytes >= 4,
              let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self)
        else { return nil }
        switch first >> 6 {
        case 0b00:
            guard length % 4 == 0 else { throw .badStunLength(Int(length)) }
            return 20 + Int(length)
        case 0b01:
            return 4 + (Int(length) + 3) & ~3
        default:
            throw .notStunOrChannelData(firstByte: first)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        var framed = false
        do {
            while let length = try Self.frameLength(buffer!), buffer!.readableBytes >= length {
                context.fireChannelRead(wrapInboundOut(buffer!.readSlice(length: length)!))
                framed = true
            }
        } catch {
            onError(error)
            buffer = nil
            // Answers to the messages framed before the bad bytes (written by the engine during this read)
            // go out before the connection closes.
            context.channel.flush()
            context.close(promise: nil)
            return
        }
        if framed || buffer!.readableBytes == 0 {
            // Progress: the clock restarts for whatever message is now incomplete.
            timer?.cancel()
            timer = nil
        }
        if buffer!.readableBytes == 0 {
            buffer = nil
        } else {
            buffer!.discardReadBytes()
            if timer == nil {
                timer = context.eventLoop.assumeIsolated().scheduleTask(in: incompleteTimeout) { [weak self] in
                    guard let self, self.buffer != nil else { return }
                    context.close(promise: nil)
                }
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }
}
