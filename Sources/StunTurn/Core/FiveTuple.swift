/// The 5-tuple that identifies an allocation (RFC 8656 §2, §5): client address, server address and
/// transport protocol.
public struct FiveTuple: Hashable, Sendable, CustomStringConvertible {
    public enum Transport: UInt8, Sendable { case udp = 17, tcp = 6, tls = 56 }

    public var client: TransportAddress
    public var server: TransportAddress
    public var transport: Transport

    public init(client: TransportAddress, server: TransportAddress, transport: Transport) {
        self.client = client
        self.server = server
        self.transport = transport
    }

    public var description: String { "\(transport) \(client)->\(server)" }

    /// Every packet from a client looks its allocation up by five-tuple: the client's address and the
    /// server's port and transport are hashed (the server's IP is one of a few listen addresses);
    /// equality still compares all five.
    public func hash(into hasher: inout Hasher) {
        client.hash(into: &hasher)
        hasher.combine(UInt32(server.port) | UInt32(transport.rawValue) << 16)
    }
}
