import Auth
import Crypto
import Logging
import NIOCore
import Synchronization
@testable import StunTurn

/// A clock the in-memory tests move by hand (monotonic and wall-clock time together).
final class TestClock: Sendable {
    private let offset = Mutex<Int64>(0)
    private let start = NIODeadline.now()
    private let startWall = 1_800_000_000

    func advance(seconds: Int64) { offset.withLock { $0 += seconds } }

    var turnClock: TurnClock {
        TurnClock(now: { [self] in start + .seconds(offset.withLock { $0 }) },
                  wallSeconds: { [self] in startWall + Int(offset.withLock { $0 }) })
    }
}

/// One TURN core driven in memory (no socket anywhere): requests signed as alice/wonder go in on a
/// listener handle, answers are read from the in-memory sink (or a stream link), relayed datagrams too.
final class CoreHarness {
    static let serverAddress = TransportAddress(ip: IPAddress("192.0.2.1")!, port: 3478)
    static let clientAddress = TransportAddress(ip: IPAddress("198.51.100.7")!, port: 40_000)
    static let peer = TransportAddress(ip: IPAddress("203.0.113.9")!, port: 5000)
    static let peer6 = TransportAddress(ip: IPAddress("2001:db8::9")!, port: 5000)

    let shared: TurnShared
    let shell: MemoryShell
    let clock = TestClock()
    let listener = SocketHandle(fd: -1, localAddress: CoreHarness.serverAddress) {}
    var username = "alice"
    var password = "wonder"
    var core: TurnCore { shell.core }
    var stats: TurnStats { shared.stats }

    init(relayedIP6: IPAddress? = nil, throttle: AuthThrottle.Settings = .off, lookups: LookupChain? = nil,
         configure: (inout TurnConfiguration) -> Void = { _ in }) {
        var c = TurnConfiguration()
        c.realm = "test.realm"
        c.relayPorts = 50000...50099
        c.limits.unauthenticatedRate = 0
        c.peerPolicy = PeerAddressPolicy(allow: [CIDR("203.0.113.0/24")!, CIDR("2001:db8::/32")!])
        configure(&c)
        let credentials = CredentialStore(.init(users: ["alice": "wonder", "bob": "builder"], realm: "test.realm"), lookups: lookups)
        credentials.throttle.update(throttle)
        var logger = Logger(label: "core-test")
        logger.logLevel = .critical
        shared = TurnShared(configuration: c, credentials: credentials, relayedIP: IPAddress("192.0.2.1")!,
                            relayedIP6: relayedIP6, logger: logger)
        shell = MemoryShell(shared: shared, clock: clock.turnClock)
    }

    var key: [UInt8] { Array(Insecure.MD5.hash(data: Array("\(username):test.realm:\(password)".utf8))) }

    /// `m` with USERNAME, REALM, a fresh NONCE and MESSAGE-INTEGRITY.
    func signed(_ m: StunMessage, for client: TransportAddress = clientAddress) -> [UInt8] {
        var m = m
        m.appendText(AttributeType.username, username)
        m.appendText(AttributeType.realm, "test.realm")
        m.appendText(AttributeType.nonce, core.authenticator.nonces.make(for: client.ip))
        return m.encode(integrity: .sha1(key: key))
    }

    /// Sends `m` (signed unless told otherwise) from the client over UDP; the answer with its transaction id.
    @discardableResult
    func send(_ m: StunMessage, signed sign: Bool = true, from client: TransportAddress = clientAddress) -> StunMessage? {
        shell.receive(sign ? signed(m, for: client) : m.encode(), from: client, on: listener)
        return answer(to: m.transactionID, client: client)
    }

    /// The answer with `transactionID` among what the sink sent to `client` (the rest is kept).
    func answer(to transactionID: TransactionID, client: TransportAddress = clientAddress) -> StunMessage? {
        datagrams(to: client).compactMap { try? StunMessage(decoding: ByteBuffer(bytes: $0.bytes)) }
            .first { $0.transactionID == transactionID }
    }

    /// What the sink sent and no test has looked at yet.
    private var unread: [MemoryDatagramSink.Datagram] = []

    /// Takes what the sink sent to `address` so far, leaving the rest.
    func datagrams(to address: TransportAddress) -> [MemoryDatagramSink.Datagram] {
        unread += shell.sink.take()
        let mine = unread.filter { TransportAddress($0.to) == address }
        unread.removeAll { TransportAddress($0.to) == address }
        return mine
    }

    static func request(_ method: StunMethod, _ build: (inout StunMessage) -> Void = { _ in }) -> StunMessage {
        var m = StunMessage(method: method, messageClass: .request)
        build(&m)
        return m
    }

    static func allocateRequest(transport: RelayTransport = .udp, _ build: (inout StunMessage) -> Void = { _ in }) -> StunMessage {
        allocateRequest(protocolNumber: transport.rawValue, build)
    }

    /// An Allocate asking for any IP protocol number in REQUESTED-TRANSPORT, including ones TURN does not relay.
    static func allocateRequest(protocolNumber: UInt8, _ build: (inout StunMessage) -> Void = { _ in }) -> StunMessage {
        request(.allocate) {
            $0.append(AttributeType.requestedTransport, [protocolNumber, 0, 0, 0])
            build(&$0)
        }
    }

    /// A UDP allocation for the client; its success response.
    @discardableResult
    func allocate(_ build: (inout StunMessage) -> Void = { _ in }) -> StunMessage? {
        send(Self.allocateRequest(build))
    }

    func createPermission(_ peers: [TransportAddress]) -> StunMessage? {
        send(Self.request(.createPermission) { m in for p in peers { m.appendXorAddress(AttributeType.xorPeerAddress, p) } })
    }

    func channelBind(_ number: UInt16, _ peer: TransportAddress) -> StunMessage? {
        send(Self.request(.channelBind) {
            $0.appendChannelNumber(number)
            $0.appendXorAddress(AttributeType.xorPeerAddress, peer)
        })
    }

    func refresh(lifetime: UInt32?, _ build: (inout StunMessage) -> Void = { _ in }) -> StunMessage? {
        send(Self.request(.refresh) {
            if let lifetime { $0.appendLifetime(lifetime) }
            build(&$0)
        })
    }

    /// The client's allocation (on the UDP five-tuple).
    var allocation: Allocation? {
        core.manager.allocations[FiveTuple(client: Self.clientAddress, server: Self.serverAddress, transport: .udp)]
    }

    /// Every XOR-RELAYED-ADDRESS of a response (a dual allocation has two).
    static func relayedAddresses(_ r: StunMessage) -> [TransportAddress] {
        r.attributes(AttributeType.xorRelayedAddress).compactMap { AddressAttribute.decodeXor($0.value, transactionID: r.transactionID) }
    }

    /// ADDRESS-ERROR-CODE of a response: the family and the code.
    static func addressError(_ r: StunMessage) -> (family: UInt8, code: Int)? {
        guard let v = r.attribute(AttributeType.addressErrorCode)?.value, v.count >= 4 else { return nil }
        return (v[0], Int(v[2]) * 100 + Int(v[3]))
    }
}

extension StunMessage {
    var code: Int? { errorCode?.code }
}
