import Auth
import FuzzDriver
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
@testable import Signaling

/// One fuzz input: the bytes a client sends on an upgraded signaling WebSocket, read by the real frame
/// handler on an EmbeddedChannel — frame parsing (`WebSocketFraming.Reader`), reassembly and limits,
/// the session, the JSON envelope scanner, and delivery to another peer in the room. The first byte
/// picks how: bit 0 set puts a valid `authenticate` frame first, so that the rest reaches the
/// authenticated paths (envelopes, `"to":"*"` to the peer already in the room, unknown peers); the
/// other seven bits are the size (1–128) of the pieces the bytes arrive in, for incremental parsing.
/// Each input is a new connection, closed at the end (its `left` goes to the other peer).
enum Harness {
    static let loop = EmbeddedEventLoop()
    static let hub: SignalingHub = {
        var c = SignalingConfiguration()
        c.maxMessageSize = 2048
        c.abuseLimit = 1_000_000
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        let credentials = CredentialStore(.init(users: ["fuzz": "pw", "other": "pw"]))
        credentials.throttle.update(.off)
        return SignalingHub(configuration: c, credentials: credentials, logger: logger)
    }()
    static let authenticate = frame(Array(#"{"event":"authenticate","data":{"username":"fuzz","password":"pw"}}"#.utf8))

    /// The peer that stays in the room and receives what the fuzzed one sends it.
    static let other: EmbeddedChannel = {
        let channel = connect()
        _ = try? channel.writeInbound(ByteBuffer(bytes: frame(Array(#"{"event":"authenticate","data":{"username":"other","password":"pw"}}"#.utf8))))
        return channel
    }()

    /// A new upgraded connection to room "fuzz", as the upgrader leaves it (NIO's encoder, unused).
    static func connect() -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try! channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
        try! channel.pipeline.syncOperations.addHandler(
            SignalingFrameHandler(hub: hub, room: "fuzz", requestHost: "fuzz.example", clientAddress: nil, maxFrameSize: 1 << 16), position: .first)
        try! channel.connect(to: SocketAddress(ipAddress: "198.51.100.7", port: 50_000)).wait()
        return channel
    }

    /// A masked client text frame.
    static func frame(_ payload: [UInt8]) -> [UInt8] {
        let key: [UInt8] = [1, 2, 3, 4]
        return [0x81, 0x80 | UInt8(payload.count)] + key + payload.enumerated().map { $0.element ^ key[$0.offset & 3] }
    }

    static func drain(_ channel: EmbeddedChannel) {
        while (try? channel.readOutbound(as: ByteBuffer.self)) ?? nil != nil {}
    }

    static func run(_ data: [UInt8]) {
        guard let mode = data.first else { return }
        _ = other
        let channel = connect()
        var bytes = mode & 1 == 1 ? authenticate : []
        bytes += data.dropFirst()
        let piece = Int(mode >> 1) + 1
        var at = 0
        while at < bytes.count {  // after a close, the rest is refused by the closed channel
            let end = min(bytes.count, at + piece)
            _ = try? channel.writeInbound(ByteBuffer(bytes: bytes[at..<end]))
            at = end
        }
        loop.run()
        channel.close(promise: nil)
        loop.run()
        drain(channel)
        drain(other)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    Harness.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// The executable's entry point (SwiftPM links `main` to `SignalingFuzz_main`): hands over to libFuzzer.
@_cdecl("SignalingFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
}
