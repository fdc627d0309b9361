/// An MQTT 5 reason code (also used internally for MQTT 3.1.1, where the encoder maps it to the
/// nearest CONNACK return code or drops it where 3.1.1 has no field for it).
public struct ReasonCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt8

    @inlinable
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Whether the code reports a failure (0x80 and above).
    @inlinable
    public var isFailure: Bool { rawValue >= 0x80 }

    public static let success = ReasonCode(rawValue: 0x00)
    public static let normalDisconnection = ReasonCode(rawValue: 0x00)
    public static let grantedQoS0 = ReasonCode(rawValue: 0x00)
    public static let grantedQoS1 = ReasonCode(rawValue: 0x01)
    public static let grantedQoS2 = ReasonCode(rawValue: 0x02)
    public static let disconnectWithWillMessage = ReasonCode(rawValue: 0x04)
    public static let noMatchingSubscribers = ReasonCode(rawValue: 0x10)
    public static let noSubscriptionExisted = ReasonCode(rawValue: 0x11)
    public static let continueAuthentication = ReasonCode(rawValue: 0x18)
    public static let reAuthenticate = ReasonCode(rawValue: 0x19)
    public static let unspecifiedError = ReasonCode(rawValue: 0x80)
    public static let malformedPacket = ReasonCode(rawValue: 0x81)
    public static let protocolError = ReasonCode(rawValue: 0x82)
    public static let implementationSpecificError = ReasonCode(rawValue: 0x83)
    public static let unsupportedProtocolVersion = ReasonCode(rawValue: 0x84)
    public static let clientIdentifierNotValid = ReasonCode(rawValue: 0x85)
    public static let badUserNameOrPassword = ReasonCode(rawValue: 0x86)
    public static let notAuthorized = ReasonCode(rawValue: 0x87)
    public static let serverUnavailable = ReasonCode(rawValue: 0x88)
    public static let serverBusy = ReasonCode(rawValue: 0x89)
    public static let banned = ReasonCode(rawValue: 0x8A)
    public static let serverShuttingDown = ReasonCode(rawValue: 0x8B)
    public static let badAuthenticationMethod = ReasonCode(rawValue: 0x8C)
    public static let keepAliveTimeout = ReasonCode(rawValue: 0x8D)
    public static let sessionTakenOver = ReasonCode(rawValue: 0x8E)
    public static let topicFilterInvalid = ReasonCode(rawValue: 0x8F)
    public static let topicNameInvalid = ReasonCode(rawValue: 0x90)
    public static let packetIdentifierInUse = ReasonCode(rawValue: 0x91)
    public static let packetIdentifierNotFound = ReasonCode(rawValue: 0x92)
    public static let receiveMaximumExceeded = ReasonCode(rawValue: 0x93)
    public static let topicAliasInvalid = ReasonCode(rawValue: 0x94)
    public static let packetTooLarge = ReasonCode(rawValue: 0x95)
    public static let messageRateTooHigh = ReasonCode(rawValue: 0x96)
    public static let quotaExceeded = ReasonCode(rawValue: 0x97)
    public static let administrativeAction = ReasonCode(rawValue: 0x98)
    public static let payloadFormatInvalid = ReasonCode(rawValue: 0x99)
    public static let retainNotSupported = ReasonCode(rawValue: 0x9A)
    public static let qosNotSupported = ReasonCode(rawValue: 0x9B)
    public static let useAnotherServer = ReasonCode(rawValue: 0x9C)
    public static let serverMoved = ReasonCode(rawValue: 0x9D)
    public static let sharedSubscriptionsNotSupported = ReasonCode(rawValue: 0x9E)
    public static let connectionRateExceeded = ReasonCode(rawValue: 0x9F)
    public static let maximumConnectTime = ReasonCode(rawValue: 0xA0)
    public static let subscriptionIdentifiersNotSupported = ReasonCode(rawValue: 0xA1)
    public static let wildcardSubscriptionsNotSupported = ReasonCode(rawValue: 0xA2)

    /// The granted-QoS reason code for a SUBACK.
    @inlinable
    public static func granted(_ qos: QoS) -> ReasonCode { ReasonCode(rawValue: qos.rawValue) }

    /// The MQTT 3.1.1 CONNACK return code closest to this reason code.
    public var connectReturnCode: UInt8 {
        switch self.rawValue {
        case 0x00: return 0x00
        case 0x84: return 0x01  // unacceptable protocol version
        case 0x85: return 0x02  // identifier rejected
        case 0x86: return 0x04  // bad user name or password
        case 0x87, 0x8A, 0x8C: return 0x05  // not authorized
        default: return 0x03  // server unavailable
        }
    }

    /// Reason code for an MQTT 3.1.1 CONNACK return code.
    public init(connectReturnCode: UInt8) {
        switch connectReturnCode {
        case 0x00: self = .success
        case 0x01: self = .unsupportedProtocolVersion
        case 0x02: self = .clientIdentifierNotValid
        case 0x04: self = .badUserNameOrPassword
        case 0x05: self = .notAuthorized
        default: self = .serverUnavailable
        }
    }

    public var description: String {
        let name: String
        switch rawValue {
        case 0x00: name = "success"
        case 0x01: name = "granted QoS 1"
        case 0x02: name = "granted QoS 2"
        case 0x04: name = "disconnect with will message"
        case 0x10: name = "no matching subscribers"
        case 0x11: name = "no subscription existed"
        case 0x18: name = "continue authentication"
        case 0x19: name = "re-authenticate"
        case 0x80: name = "unspecified error"
        case 0x81: name = "malformed packet"
        case 0x82: name = "protocol error"
        case 0x83: name = "implementation specific error"
        case 0x84: name = "unsupported protocol version"
        case 0x85: name = "client identifier not valid"
        case 0x86: name = "bad user name or password"
        case 0x87: name = "not authorized"
        case 0x88: name = "server unavailable"
        case 0x89: name = "server busy"
        case 0x8A: name = "banned"
        case 0x8B: name = "server shutting down"
        case 0x8C: name = "bad authentication method"
        case 0x8D: name = "keep alive timeout"
        case 0x8E: name = "session taken over"
        case 0x8F: name = "topic filter invalid"
        case 0x90: name = "topic name invalid"
        case 0x91: name = "packet identifier in use"
        case 0x92: name = "packet identifier not found"
        case 0x93: name = "receive maximum exceeded"
        case 0x94: name = "topic alias invalid"
        case 0x95: name = "packet too large"
        case 0x96: name = "message rate too high"
        case 0x97: name = "quota exceeded"
        case 0x98: name = "administrative action"
        case 0x99: name = "payload format invalid"
        case 0x9A: name = "retain not supported"
        case 0x9B: name = "QoS not supported"
        case 0x9C: name = "use another server"
        case 0x9D: name = "server moved"
        case 0x9E: name = "shared subscriptions not supported"
        case 0x9F: name = "connection rate exceeded"
        case 0xA0: name = "maximum connect time"
        case 0xA1: name = "subscription identifiers not supported"
        case 0xA2: name = "wildcard subscriptions not supported"
        default: name = "reason"
        }
        return "\(name) (0x\(String(rawValue, radix: 16, uppercase: true)))"
    }
}
