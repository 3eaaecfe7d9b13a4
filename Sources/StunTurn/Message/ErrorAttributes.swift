/// ERROR-CODE (RFC 8489 §14.8) and UNKNOWN-ATTRIBUTES (§14.13).
public struct StunError: Equatable, Sendable, Error {
    public var code: Int
    public var reason: String

    public init(_ code: Int, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static let badRequest = StunError(400, "Bad Request")
    public static let unauthorized = StunError(401, "Unauthorized")
    public static let forbidden = StunError(403, "Forbidden")
    public static let unknownAttribute = StunError(420, "Unknown Attribute")
    public static let allocationMismatch = StunError(437, "Allocation Mismatch")
    public static let staleNonce = StunError(438, "Stale Nonce")
    public static let addressFamilyNotSupported = StunError(440, "Address Family not Supported")
    public static let wrongCredentials = StunError(441, "Wrong Credentials")
    public static let unsupportedTransport = StunError(442, "Unsupported Transport Protocol")
    public static let peerAddressFamilyMismatch = StunError(443, "Peer Address Family Mismatch")
    /// RFC 6062 §6.3.
    public static let connectionAlreadyExists = StunError(446, "Connection Already Exists")
    public static let connectionTimeoutOrFailure = StunError(447, "Connection Timeout or Failure")
    public static let allocationQuotaReached = StunError(486, "Allocation Quota Reached")
    public static let serverError = StunError(500, "Server Error")
    public static let insufficientCapacity = StunError(508, "Insufficient Capacity")
    /// 508 while draining: the server keeps its allocations and makes no new ones.
    public static let serverShuttingDown = StunError(508, "Server Shutting Down")

    public var encoded: [UInt8] {
        [0, 0, UInt8((code / 100) & 0x07), UInt8(code % 100)] + Array(reason.utf8.prefix(763))
    }

    public static func decode(_ value: [UInt8]) -> StunError? {
        guard value.count >= 4 else { return nil }
        let code = Int(value[2] & 0x07) * 100 + Int(value[3])
        return StunError(code, String(decoding: value[4...], as: UTF8.self))
    }
}

extension StunMessage {
    public var errorCode: StunError? { attribute(AttributeType.errorCode).flatMap { StunError.decode($0.value) } }

    public var unknownAttributesList: [UInt16] {
        guard let v = attribute(AttributeType.unknownAttributes)?.value else { return [] }
        return stride(from: 0, to: v.count - 1, by: 2).map { UInt16(v[$0]) << 8 | UInt16(v[$0 + 1]) }
    }

    public mutating func appendUnknownAttributes(_ types: [UInt16]) {
        append(AttributeType.unknownAttributes, types.flatMap { $0.bigEndianBytes })
    }
}
