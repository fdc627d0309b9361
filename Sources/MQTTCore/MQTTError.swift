/// An error found while decoding or validating MQTT packets.
///
/// Each error carries the reason code an MQTT 5 peer should receive (in a CONNACK or DISCONNECT);
/// for MQTT 3.1.1 peers the broker closes the connection instead. The description names what was
/// wrong but never carries payloads, passwords or other secrets.
public struct MQTTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of error occurred.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: Sendable, Hashable {
            case malformedPacket
            case protocolError
            case packetTooLarge
            case unsupportedProtocolVersion
            case topicNameInvalid
            case topicFilterInvalid
            case payloadFormatInvalid
        }

        fileprivate var base: Base

        /// The bytes do not form a valid packet (bad lengths, reserved bits, invalid UTF-8...).
        public static let malformedPacket = Code(base: .malformedPacket)
        /// The packet is well formed but breaks a protocol rule.
        public static let protocolError = Code(base: .protocolError)
        /// The packet exceeds the maximum packet size.
        public static let packetTooLarge = Code(base: .packetTooLarge)
        /// CONNECT names a protocol version this implementation does not speak.
        public static let unsupportedProtocolVersion = Code(base: .unsupportedProtocolVersion)
        /// A topic name breaks the topic rules.
        public static let topicNameInvalid = Code(base: .topicNameInvalid)
        /// A topic filter breaks the topic rules.
        public static let topicFilterInvalid = Code(base: .topicFilterInvalid)
        /// A payload marked as UTF-8 is not valid UTF-8.
        public static let payloadFormatInvalid = Code(base: .payloadFormatInvalid)

        public var description: String {
            switch base {
            case .malformedPacket: return "malformedPacket"
            case .protocolError: return "protocolError"
            case .packetTooLarge: return "packetTooLarge"
            case .unsupportedProtocolVersion: return "unsupportedProtocolVersion"
            case .topicNameInvalid: return "topicNameInvalid"
            case .topicFilterInvalid: return "topicFilterInvalid"
            case .payloadFormatInvalid: return "payloadFormatInvalid"
            }
        }
    }

    /// The error's kind.
    public var code: Code
    /// A short human-readable explanation.
    public var message: String
    /// Source location that raised the error, for diagnostics.
    public var file: String
    /// Source line that raised the error.
    public var line: Int

    public init(code: Code, message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    /// The MQTT 5 reason code for this error.
    public var reasonCode: ReasonCode {
        switch code.base {
        case .malformedPacket: return .malformedPacket
        case .protocolError: return .protocolError
        case .packetTooLarge: return .packetTooLarge
        case .unsupportedProtocolVersion: return .unsupportedProtocolVersion
        case .topicNameInvalid: return .topicNameInvalid
        case .topicFilterInvalid: return .topicFilterInvalid
        case .payloadFormatInvalid: return .payloadFormatInvalid
        }
    }

    public var description: String { "MQTTError.\(code): \(message)" }

    public static func == (lhs: MQTTError, rhs: MQTTError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    public static func malformed(_ message: String, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .malformedPacket, message: message, file: file, line: line)
    }

    public static func protocolError(_ message: String, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .protocolError, message: message, file: file, line: line)
    }

    public static func packetTooLarge(_ size: Int, maximum: Int, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .packetTooLarge, message: "packet of \(size) bytes exceeds maximum of \(maximum)", file: file, line: line)
    }

    public static func unsupportedProtocolVersion(_ message: String, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .unsupportedProtocolVersion, message: message, file: file, line: line)
    }

    public static func topicNameInvalid(_ message: String, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .topicNameInvalid, message: message, file: file, line: line)
    }

    public static func topicFilterInvalid(_ message: String, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .topicFilterInvalid, message: message, file: file, line: line)
    }

    public static func payloadFormatInvalid(_ message: String, file: String = #fileID, line: Int = #line) -> MQTTError {
        MQTTError(code: .payloadFormatInvalid, message: message, file: file, line: line)
    }
}
