import Auth
import Crypto
import FuzzDriver
import Logging
import NIOCore
@testable import StunTurn

/// One fuzz input: its first byte picks what the rest is.
/// - even: raw bytes from the client, as a datagram on the listener (decoder, dispatch, every
///   unauthenticated path, ChannelData and Send indications into the client's allocation);
/// - odd: a request signed with a valid long-term credential: bytes 1-2 are the message type, 3-14 the
///   transaction id, the rest its attributes; USERNAME, REALM, a fresh NONCE and MESSAGE-INTEGRITY are
///   added, so every handler past authentication is reached (Refresh, CreatePermission, ChannelBind,
///   Connect, ConnectionBind, Allocate on an existing allocation);
/// then the same remaining bytes arrive from a peer on the relay socket (the peer → client path).
/// Each input starts from one fresh UDP allocation for the fuzzed client, made through the core like any
/// other (a signed Allocate, its relay socket bound in memory). The core runs without sockets
/// (`MemoryShell`): what it relays and answers lands in the in-memory sink, which every input empties.
enum Harness {
    static let credentials: CredentialStore = {
        let c = CredentialStore(.init(users: ["fuzz": "pw"]))
        c.throttle.update(.off)
        return c
    }()
    static let shared: TurnShared = {
        var c = TurnConfiguration()
        c.realm = "fuzz.realm"
        c.peerPolicy = PeerAddressPolicy(allow: [CIDR("0.0.0.0/0")!, CIDR("::/0")!])
        c.limits.unauthenticatedRate = 0
        c.relayPorts = 40000...40100
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        return TurnShared(configuration: c, credentials: credentials, relayedIP: IPAddress("192.0.2.1")!, logger: logger)
    }()
    nonisolated(unsafe) static let shell = MemoryShell(shared: shared)
    static let client = TransportAddress(ip: IPAddress("198.51.100.7")!, port: 40_000)
    static let server = TransportAddress(ip: IPAddress("192.0.2.1")!, port: 3478)
    static let peer = TransportAddress(ip: IPAddress("203.0.113.9")!, port: 5000)
    nonisolated(unsafe) static let listener = SocketHandle(fd: -1, localAddress: server) {}
    static let key = Array(Insecure.MD5.hash(data: Array("fuzz:fuzz.realm:pw".utf8)))

    static var nonce: String { shell.core.authenticator.nonces.make(for: client.ip) }

    /// Ends the previous input's allocations and makes a fresh one; its relay socket.
    static func freshAllocation() -> SocketHandle? {
        shell.perform(shell.core.endAll(reason: "next input"))
        var allocate = StunMessage(method: .allocate, messageClass: .request)
        allocate.append(AttributeType.requestedTransport, [17, 0, 0, 0])
        allocate.appendText(AttributeType.username, "fuzz")
        allocate.appendText(AttributeType.realm, "fuzz.realm")
        allocate.appendText(AttributeType.nonce, nonce)
        shell.receive(allocate.encode(integrity: .sha1(key: key)), from: client, on: listener)
        return shell.boundSockets.last.flatMap { $0.allocation == nil ? nil : $0 }
    }

    static func attribute(_ type: UInt16, _ value: [UInt8]) -> [UInt8] {
        var out = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
        out += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
        return out
    }

    /// The request of an odd input, signed with the fuzz user's key.
    static func signed(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        let input = Array(bytes)
        guard input.count >= 14 else { return input }
        let type = UInt16(input[0]) << 8 | UInt16(input[1])
        var attributes = Array(input[14...].prefix(1200))
        attributes += [UInt8](repeating: 0, count: (4 - attributes.count % 4) % 4)
        attributes += attribute(0x0006, Array("fuzz".utf8)) + attribute(0x0014, Array("fuzz.realm".utf8))
            + attribute(0x0015, Array(nonce.utf8))
        let length = attributes.count + 24
        var message = [UInt8(type >> 8) & 0x3F, UInt8(type & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF), 0x21, 0x12, 0xA4, 0x42]
        message += input[2..<14]
        message += attributes
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key))
        return message + attribute(0x0008, Array(mac))
    }

    static func run(_ data: [UInt8]) {
        guard let mode = data.first else { return }
        let relay = freshAllocation()
        let rest = data.dropFirst()
        let bytes = mode & 1 == 0 ? Array(rest) : signed(rest)
        let buffer = ByteBuffer(bytes: bytes)
        // The decoder on its own, then the whole dispatch.
        _ = try? StunMessage(decoding: buffer)
        _ = ChannelData.parse(buffer)
        shell.receive(bytes, from: client, on: listener)
        if let relay { shell.receiveFromPeer(Array(rest), from: peer, on: relay) }
        shell.sendLater()
        shell.forgetRecords()
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    Harness.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// The executable's entry point (SwiftPM links `main` to `TurnFuzz_main`): hands over to libFuzzer.
@_cdecl("TurnFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
}
