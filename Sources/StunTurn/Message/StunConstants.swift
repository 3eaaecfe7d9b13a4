/// STUN method (RFC 8489 §5, RFC 8656 §17, RFC 6062 §6.1).
public struct StunMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let binding = StunMethod(rawValue: 0x001)
    public static let allocate = StunMethod(rawValue: 0x003)
    public static let refresh = StunMethod(rawValue: 0x004)
    public static let send = StunMethod(rawValue: 0x006)
    public static let data = StunMethod(rawValue: 0x007)
    public static let createPermission = StunMethod(rawValue: 0x008)
    public static let channelBind = StunMethod(rawValue: 0x009)
    public static let connect = StunMethod(rawValue: 0x00A)
    public static let connectionBind = StunMethod(rawValue: 0x00B)
    public static let connectionAttempt = StunMethod(rawValue: 0x00C)

    public var description: String {
        switch self {
        case .binding: return "Binding"
        case .allocate: return "Allocate"
        case .refresh: return "Refresh"
        case .send: return "Send"
        case .data: return "Data"
        case .createPermission: return "CreatePermission"
        case .channelBind: return "ChannelBind"
        case .connect: return "Connect"
        case .connectionBind: return "ConnectionBind"
        case .connectionAttempt: return "ConnectionAttempt"
        default: return "Method(0x\(String(rawValue, radix: 16)))"
        }
    }
}

/// STUN message class (RFC 8489 §5).
public enum StunClass: UInt16, Sendable {
    case request = 0b00
    case indication = 0b01
    case successResponse = 0b10
    case errorResponse = 0b11
}

/// Attribute type codes (RFC 8489 §18.3, RFC 8656 §18, RFC 6062 §6.2).
public enum AttributeType {
    // Comprehension-required (0x0000-0x7FFF)
    public static let mappedAddress: UInt16 = 0x0001
    public static let username: UInt16 = 0x0006
    public static let messageIntegrity: UInt16 = 0x0008
    public static let errorCode: UInt16 = 0x0009
    public static let unknownAttributes: UInt16 = 0x000A
    public static let channelNumber: UInt16 = 0x000C
    public static let lifetime: UInt16 = 0x000D
    public static let xorPeerAddress: UInt16 = 0x0012
    public static let data: UInt16 = 0x0013
    public static let realm: UInt16 = 0x0014
    public static let nonce: UInt16 = 0x0015
    public static let xorRelayedAddress: UInt16 = 0x0016
    public static let requestedAddressFamily: UInt16 = 0x0017
    public static let evenPort: UInt16 = 0x0018
    public static let requestedTransport: UInt16 = 0x0019
    public static let dontFragment: UInt16 = 0x001A
    public static let messageIntegritySHA256: UInt16 = 0x001C
    public static let passwordAlgorithm: UInt16 = 0x001D
    public static let userhash: UInt16 = 0x001E
    public static let xorMappedAddress: UInt16 = 0x0020
    public static let reservationToken: UInt16 = 0x0022
    public static let priority: UInt16 = 0x0024
    public static let useCandidate: UInt16 = 0x0025
    public static let connectionID: UInt16 = 0x002A
    // Comprehension-optional (0x8000-0xFFFF)
    public static let additionalAddressFamily: UInt16 = 0x8000
    public static let addressErrorCode: UInt16 = 0x8001
    public static let passwordAlgorithms: UInt16 = 0x8002
    public static let alternateDomain: UInt16 = 0x8003
    public static let icmp: UInt16 = 0x8004
    public static let software: UInt16 = 0x8022
    public static let alternateServer: UInt16 = 0x8023
    public static let fingerprint: UInt16 = 0x8028
    public static let iceControlled: UInt16 = 0x8029
    public static let iceControlling: UInt16 = 0x802A
    public static let responseOrigin: UInt16 = 0x802B
    public static let otherAddress: UInt16 = 0x802C

    /// Comprehension-required attributes this server understands. Any other attribute in
    /// 0x0000-0x7FFF makes a request fail with 420 (RFC 8489 §7.3.1).
    public static let understoodRequired: Set<UInt16> = [
        mappedAddress, username, messageIntegrity, errorCode, unknownAttributes, channelNumber, lifetime,
        xorPeerAddress, data, realm, nonce, xorRelayedAddress, requestedAddressFamily, evenPort,
        requestedTransport, dontFragment, messageIntegritySHA256, passwordAlgorithm, userhash,
        xorMappedAddress, reservationToken, priority, useCandidate, connectionID,
    ]

    public static func isComprehensionRequired(_ type: UInt16) -> Bool { type < 0x8000 }
}

/// The magic cookie, fixed since RFC 5389 (RFC 8489 §5).
public let stunMagicCookie: UInt32 = 0x2112_A442
