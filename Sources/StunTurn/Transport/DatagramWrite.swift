import NIOCore

extension Channel {
    /// Queues a datagram on a channel of the calling event loop (unflushed).
    ///
    /// `Channel.write(_:promise:)` is generic over the message and is not specialised across the module
    /// boundary when called on a `Channel` existential, so it wraps every datagram in `NIOAny` through
    /// dynamic casts (`swift_dynamicCast` showed in the relay path's profile). Wrapping it here, where the
    /// type is known, and writing through the pipeline's synchronous operations skips them. Only for
    /// the engine's own UDP sockets, which live on its event loop.
    @inline(__always)
    func writeDatagram(_ envelope: AddressedEnvelope<ByteBuffer>) {
        pipeline.syncOperations.write(NIOAny(envelope), promise: nil)
    }
}
