import MQTTCore
import NIOCore

/// An accepted PUBLISH as the platform's ingress sees it.
public struct MQTTTapMessage: Sendable {
    public var topic: String
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// MQTT 5 properties (content type, user properties, ...); empty for 3.1.1.
    public var properties: MQTTProperties
    public var protocolVersion: MQTTProtocolVersion

    public init(topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: MQTTProperties, protocolVersion: MQTTProtocolVersion) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.protocolVersion = protocolVersion
    }
}

/// The tap's decision about a message.
public enum MQTTTapDecision: Sendable {
    /// Route the message to subscribers as usual.
    case accept
    /// Do not route it; MQTT 5 publishers receive this reason code (e.g.
    /// ``ReasonCode/payloadFormatInvalid``) and reason string in PUBACK/PUBREC.
    case reject(ReasonCode, reason: String?)
    /// The platform takes the message over (a request it answers itself, e.g. provisioning):
    /// it is acknowledged to the publisher as accepted but neither routed nor retained.
    case consume
}

/// Sees every PUBLISH the broker accepts from a client, after authorization and before routing:
/// the platform's ingress. Called on the publisher's event loop; must not block (hand slow work
/// to a task and answer through ``MQTTBroker/publish(topic:payload:qos:retain:properties:)``).
/// Topics are internal names (after the principal's ``MQTTTopicMapping``). Messages the
/// platform publishes itself do not pass through the tap.
public protocol MQTTMessageTap: Sendable {
    func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision

    /// `false` when messages from principals without a topic mapping are always accepted
    /// unseen: the broker then does not call ``inspect(_:from:)`` for them. Default `true`.
    var inspectsUnmappedPrincipals: Bool { get }
}

extension MQTTMessageTap {
    public var inspectsUnmappedPrincipals: Bool { true }
}

/// A tap that accepts everything and looks at nothing.
public struct NoMessageTap: MQTTMessageTap {
    public init() {}

    public var inspectsUnmappedPrincipals: Bool { false }

    public func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision { .accept }
}
