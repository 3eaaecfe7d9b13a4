import NIOCore

/// What a WebSocket connection offers whoever sends on it (the hub's `PeerConnection`): encoded frames
/// written now, flushed later. The connection owns how; callers hold no part of its pipeline. On the
/// connection's event loop only.
protocol WebSocketOutput: AnyObject {
    func write(frame: ByteBuffer)
    func flush()
}
