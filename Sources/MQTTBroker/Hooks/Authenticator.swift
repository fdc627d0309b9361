import MQTTCore
import NIOCore

/// Who a connected client is, as established by the ``MQTTAuthenticator`` at CONNECT.
public struct MQTTPrincipal: Sendable, Hashable, CustomStringConvertible {
    /// The MQTT client identifier (after assignment, for clients that sent an empty one).
    public var clientIdentifier: String
    /// The user name the client presented, if any.
    public var username: String?
    /// Attributes the authenticator attaches for the authorizer and the platform (tenant,
    /// device id, role, ...). The broker itself never interprets them.
    public var attributes: [String: String]
    /// How this client's topic names map to the broker's (tenant isolation, per-device topic
    /// aliases such as `v1/devices/me/...`); `nil` means the client uses internal names.
    public var topicMapping: MQTTTopicMapping?

    public init(
        clientIdentifier: String, username: String? = nil, attributes: [String: String] = [:], topicMapping: MQTTTopicMapping? = nil
    ) {
        self.clientIdentifier = clientIdentifier
        self.username = username
        self.attributes = attributes
        self.topicMapping = topicMapping
    }

    /// The attribute naming who owns the client's session (a device, a user): a connection
    /// asking to resume a session that a different owner left gets a new, empty session instead
    /// (`sessionPresent` 0), so that a reused client identifier never hands one device another's
    /// subscriptions and queued messages. Without it (both sides), MQTT's rule applies: the
    /// client identifier alone names the session.
    public static let sessionOwnerAttribute = "session.owner"

    /// The session's owner (``sessionOwnerAttribute``), if the authenticator set one.
    public var sessionOwner: String? { attributes[Self.sessionOwnerAttribute] }

    public var description: String {
        "MQTTPrincipal(clientId: \(clientIdentifier)\(username.map { ", username: \($0)" } ?? ""))"
    }
}

/// How a client reached the broker.
public enum MQTTTransport: String, Sendable, Hashable {
    case tcp
    case tls
    case webSocket = "ws"
    case secureWebSocket = "wss"
}

/// A verified TLS client certificate, as the authenticator sees it. (A class so a connection
/// without one pays only a pointer.)
public final class MQTTPeerCertificate: Sendable, Hashable {
    /// The subject distinguished name, RFC 4514 form.
    public let subject: String
    /// The subject's common name, if any.
    public let commonName: String?
    /// DNS, URI and other subject alternative names, as strings.
    public let subjectAlternativeNames: [String]
    /// SHA-256 fingerprint of the DER encoding, lower-case hex.
    public let sha256Fingerprint: String
    /// The certificate in DER form.
    public let der: [UInt8]

    public static func == (lhs: MQTTPeerCertificate, rhs: MQTTPeerCertificate) -> Bool { lhs.der == rhs.der }

    public func hash(into hasher: inout Hasher) { hasher.combine(der) }

    public init(subject: String, commonName: String?, subjectAlternativeNames: [String], sha256Fingerprint: String, der: [UInt8]) {
        self.subject = subject
        self.commonName = commonName
        self.subjectAlternativeNames = subjectAlternativeNames
        self.sha256Fingerprint = sha256Fingerprint
        self.der = der
    }
}

/// What the authenticator is asked to decide on.
public struct MQTTAuthenticationRequest: Sendable {
    public var clientIdentifier: String
    public var username: String?
    /// The password bytes. Never log them.
    public var password: ByteBuffer?
    public var protocolVersion: MQTTProtocolVersion
    public var remoteAddress: SocketAddress?
    public var transport: MQTTTransport
    /// The client certificate, when the TLS listener verified one.
    public var certificate: MQTTPeerCertificate?
    /// CONNECT properties (MQTT 5), e.g. user properties.
    public var properties: MQTTProperties

    public init(
        clientIdentifier: String,
        username: String?,
        password: ByteBuffer?,
        protocolVersion: MQTTProtocolVersion,
        remoteAddress: SocketAddress?,
        transport: MQTTTransport,
        certificate: MQTTPeerCertificate? = nil,
        properties: MQTTProperties = .init()
    ) {
        self.clientIdentifier = clientIdentifier
        self.username = username
        self.password = password
        self.protocolVersion = protocolVersion
        self.remoteAddress = remoteAddress
        self.transport = transport
        self.certificate = certificate
        self.properties = properties
    }
}

/// The authenticator's answer.
public enum MQTTAuthenticationResult: Sendable {
    /// Accept the client as this principal.
    case accept(MQTTPrincipal)
    /// Refuse with this CONNACK reason code (e.g. ``ReasonCode/badUserNameOrPassword``,
    /// ``ReasonCode/notAuthorized``) and an optional reason string (MQTT 5).
    case refuse(ReasonCode, reason: String? = nil)
}

/// Decides who may connect. Called once per CONNECT, off the hot path; may do I/O.
public protocol MQTTAuthenticator: Sendable {
    /// Authenticates a connecting client.
    func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult

    /// Answers at once when the decision needs no I/O (e.g. from a cache), called on the
    /// connection's event loop before ``authenticate(_:)``; `nil` means "ask `authenticate`".
    /// Answering here saves a task hop per CONNECT.
    func authenticateImmediately(_ request: MQTTAuthenticationRequest) -> MQTTAuthenticationResult?
}

extension MQTTAuthenticator {
    public func authenticateImmediately(_ request: MQTTAuthenticationRequest) -> MQTTAuthenticationResult? { nil }
}

/// Accepts every client as itself. The default until the registry provides identities.
public struct AllowAllAuthenticator: MQTTAuthenticator {
    public init() {}

    public func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult {
        .accept(MQTTPrincipal(clientIdentifier: request.clientIdentifier, username: request.username))
    }

    public func authenticateImmediately(_ request: MQTTAuthenticationRequest) -> MQTTAuthenticationResult? {
        .accept(MQTTPrincipal(clientIdentifier: request.clientIdentifier, username: request.username))
    }
}
