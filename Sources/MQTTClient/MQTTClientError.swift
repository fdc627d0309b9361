import MQTTCore

/// An error thrown by ``MQTTClient``.
///
/// Check ``code`` to handle a specific error; ``reasonCode`` carries the MQTT reason code
/// where the server sent one (CONNACK refusal, DISCONNECT). `String(describing:)` adds a short
/// explanation and the source location. Descriptions never carry passwords or payloads.
///
/// Equality and hashing consider only ``code`` and ``reasonCode``, so tests can compare with an
/// error built by hand: `#expect(throws: MQTTClientError.connectionRefused(.notAuthorized))`.
public struct MQTTClientError: Error, Hashable, CustomStringConvertible {
    /// The kind of error.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            case connectionRefused
            case connectionFailed
            case connectTimeout
            case tlsHandshakeFailed
            case webSocketUpgradeFailed
            case notConnected
            case alreadyConnected
            case connectionClosed
            case serverDisconnected
            case keepAliveTimeout
            case protocolViolation
            case malformedPacket
            case packetTooLarge
            case packetIdentifiersExhausted
            case unknownPacketIdentifier
            case invalidArgument
            case shutDown
        }

        fileprivate var base: Base

        /// The server answered CONNECT with a failure reason code (see ``MQTTClientError/reasonCode``).
        public static let connectionRefused = Code(base: .connectionRefused)
        /// The transport could not be established (name resolution, TCP connect, ...).
        public static let connectionFailed = Code(base: .connectionFailed)
        /// No CONNACK arrived within the connect timeout.
        public static let connectTimeout = Code(base: .connectTimeout)
        /// The TLS handshake failed, for instance because the server's certificate is not trusted.
        public static let tlsHandshakeFailed = Code(base: .tlsHandshakeFailed)
        /// The server did not accept the WebSocket upgrade.
        public static let webSocketUpgradeFailed = Code(base: .webSocketUpgradeFailed)
        /// The operation needs a connection and there is none.
        public static let notConnected = Code(base: .notConnected)
        /// ``MQTTClient/connect()`` was called while connected or connecting.
        public static let alreadyConnected = Code(base: .alreadyConnected)
        /// The connection closed before the operation completed.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// The server sent DISCONNECT (see ``MQTTClientError/reasonCode``).
        public static let serverDisconnected = Code(base: .serverDisconnected)
        /// The server did not answer PINGREQ in time.
        public static let keepAliveTimeout = Code(base: .keepAliveTimeout)
        /// The server broke a protocol rule (unexpected packet, unknown topic alias, ...).
        public static let protocolViolation = Code(base: .protocolViolation)
        /// The server sent bytes that do not decode as an MQTT packet.
        public static let malformedPacket = Code(base: .malformedPacket)
        /// A packet exceeds the maximum packet size the server (outbound) or client (inbound) allows.
        public static let packetTooLarge = Code(base: .packetTooLarge)
        /// All 65535 packet identifiers are in flight.
        public static let packetIdentifiersExhausted = Code(base: .packetIdentifiersExhausted)
        /// No received message awaits an acknowledgement with this packet identifier.
        public static let unknownPacketIdentifier = Code(base: .unknownPacketIdentifier)
        /// An argument breaks a rule (invalid topic, QoS above the server's maximum, ...).
        public static let invalidArgument = Code(base: .invalidArgument)
        /// The client was shut down.
        public static let shutDown = Code(base: .shutDown)

        /// The code's name.
        public var description: String {
            switch base {
            case .connectionRefused: return "connectionRefused"
            case .connectionFailed: return "connectionFailed"
            case .connectTimeout: return "connectTimeout"
            case .tlsHandshakeFailed: return "tlsHandshakeFailed"
            case .webSocketUpgradeFailed: return "webSocketUpgradeFailed"
            case .notConnected: return "notConnected"
            case .alreadyConnected: return "alreadyConnected"
            case .connectionClosed: return "connectionClosed"
            case .serverDisconnected: return "serverDisconnected"
            case .keepAliveTimeout: return "keepAliveTimeout"
            case .protocolViolation: return "protocolViolation"
            case .malformedPacket: return "malformedPacket"
            case .packetTooLarge: return "packetTooLarge"
            case .packetIdentifiersExhausted: return "packetIdentifiersExhausted"
            case .unknownPacketIdentifier: return "unknownPacketIdentifier"
            case .invalidArgument: return "invalidArgument"
            case .shutDown: return "shutDown"
            }
        }
    }

    /// The kind of error.
    public var code: Code
    /// The MQTT reason code the server sent (CONNACK, DISCONNECT), or the one the client sent
    /// when it closed the connection for a protocol violation.
    public var reasonCode: ReasonCode?
    /// The reason string the server sent with ``reasonCode`` (MQTT 5), if any.
    public var reasonString: String?
    /// The error that caused this one (an `NIOSSLError`, an `IOError`, an ``MQTTError``...).
    public var underlying: (any Error)?
    /// A short explanation.
    public var message: String
    /// The source file that raised the error.
    public var file: String
    /// The source line that raised the error.
    public var line: UInt

    init(
        code: Code,
        message: String,
        reasonCode: ReasonCode? = nil,
        reasonString: String? = nil,
        underlying: (any Error)? = nil,
        file: String,
        line: UInt
    ) {
        self.code = code
        self.message = message
        self.reasonCode = reasonCode
        self.reasonString = reasonString
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    /// `MQTTClientError.<code>: <message> [reason] [caused by] <file>:<line>`.
    public var description: String {
        var text = "MQTTClientError.\(code): \(message)"
        if let reasonCode { text += " [reason: \(reasonCode)]" }
        if let reasonString { text += " [reason string: \(reasonString)]" }
        if let underlying { text += " [caused by: \(String(describing: underlying))]" }
        return text + " \(file):\(line)"
    }

    /// Compares ``code`` and ``reasonCode``.
    public static func == (lhs: MQTTClientError, rhs: MQTTClientError) -> Bool {
        lhs.code == rhs.code && lhs.reasonCode == rhs.reasonCode
    }

    /// Hashes ``code`` and ``reasonCode``.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(reasonCode)
    }

    // MARK: factories

    /// The server refused the connection with `reasonCode`.
    @inline(never)
    public static func connectionRefused(
        _ reasonCode: ReasonCode,
        reasonString: String? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(
            code: .connectionRefused,
            message: "the server refused the connection",
            reasonCode: reasonCode,
            reasonString: reasonString,
            file: file,
            line: line
        )
    }

    /// The transport could not be established.
    @inline(never)
    public static func connectionFailed(
        _ message: String,
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(code: .connectionFailed, message: message, underlying: underlying, file: file, line: line)
    }

    /// No CONNACK within the connect timeout.
    @inline(never)
    public static func connectTimeout(file: String = #fileID, line: UInt = #line) -> MQTTClientError {
        MQTTClientError(code: .connectTimeout, message: "no CONNACK within the connect timeout", file: file, line: line)
    }

    /// The TLS handshake failed.
    @inline(never)
    public static func tlsHandshakeFailed(
        underlying: (any Error)?,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(
            code: .tlsHandshakeFailed,
            message: "the TLS handshake failed (is the server certificate trusted and issued for this host?)",
            underlying: underlying,
            file: file,
            line: line
        )
    }

    /// The WebSocket upgrade was refused.
    @inline(never)
    public static func webSocketUpgradeFailed(
        _ message: String,
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(code: .webSocketUpgradeFailed, message: message, underlying: underlying, file: file, line: line)
    }

    /// The operation needs a connection.
    @inline(never)
    public static func notConnected(file: String = #fileID, line: UInt = #line) -> MQTTClientError {
        MQTTClientError(code: .notConnected, message: "the client is not connected", file: file, line: line)
    }

    /// Connect was called while connected or connecting.
    @inline(never)
    public static func alreadyConnected(file: String = #fileID, line: UInt = #line) -> MQTTClientError {
        MQTTClientError(
            code: .alreadyConnected,
            message: "the client is already connected or connecting",
            file: file,
            line: line
        )
    }

    /// The connection closed before the operation completed.
    @inline(never)
    public static func connectionClosed(
        _ message: String = "the connection closed",
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(code: .connectionClosed, message: message, underlying: underlying, file: file, line: line)
    }

    /// The server sent DISCONNECT.
    @inline(never)
    public static func serverDisconnected(
        _ reasonCode: ReasonCode,
        reasonString: String? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(
            code: .serverDisconnected,
            message: "the server sent DISCONNECT",
            reasonCode: reasonCode,
            reasonString: reasonString,
            file: file,
            line: line
        )
    }

    /// No PINGRESP in time.
    @inline(never)
    public static func keepAliveTimeout(file: String = #fileID, line: UInt = #line) -> MQTTClientError {
        MQTTClientError(
            code: .keepAliveTimeout,
            message: "no PINGRESP within the ping timeout",
            reasonCode: .keepAliveTimeout,
            file: file,
            line: line
        )
    }

    /// The server broke a protocol rule; the client closes with `reasonCode`.
    @inline(never)
    public static func protocolViolation(
        _ message: String,
        reasonCode: ReasonCode = .protocolError,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(code: .protocolViolation, message: message, reasonCode: reasonCode, file: file, line: line)
    }

    /// The server's bytes did not decode.
    @inline(never)
    public static func malformedPacket(
        underlying: MQTTError,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(
            code: underlying.code == .packetTooLarge ? .packetTooLarge : .malformedPacket,
            message: "the server sent an invalid packet",
            reasonCode: underlying.reasonCode,
            underlying: underlying,
            file: file,
            line: line
        )
    }

    /// A packet is larger than the peer accepts.
    @inline(never)
    public static func packetTooLarge(
        size: Int,
        maximum: Int,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(
            code: .packetTooLarge,
            message: "packet of \(size) bytes exceeds the server's maximum packet size of \(maximum)",
            reasonCode: .packetTooLarge,
            file: file,
            line: line
        )
    }

    /// Every packet identifier is in use.
    @inline(never)
    public static func packetIdentifiersExhausted(file: String = #fileID, line: UInt = #line) -> MQTTClientError {
        MQTTClientError(
            code: .packetIdentifiersExhausted,
            message: "all packet identifiers are in flight",
            file: file,
            line: line
        )
    }

    /// Nothing awaits an acknowledgement with this identifier.
    @inline(never)
    public static func unknownPacketIdentifier(
        _ identifier: UInt16,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(
            code: .unknownPacketIdentifier,
            message: "no received message awaits an acknowledgement with packet identifier \(identifier)",
            file: file,
            line: line
        )
    }

    /// An argument breaks a rule.
    @inline(never)
    public static func invalidArgument(
        _ message: String,
        underlying: (any Error)? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> MQTTClientError {
        MQTTClientError(code: .invalidArgument, message: message, underlying: underlying, file: file, line: line)
    }

    /// The client was shut down.
    @inline(never)
    public static func shutDown(file: String = #fileID, line: UInt = #line) -> MQTTClientError {
        MQTTClientError(code: .shutDown, message: "the client was shut down", file: file, line: line)
    }
}
