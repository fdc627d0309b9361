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
    /// Route the message now, but hold the PUBACK/PUBREC until `completion` succeeds (e.g.
    /// telemetry written durably).
    ///
    /// Routing (and retaining) happens at once, in the order the messages arrived. The
    /// acknowledgement waits for `completion` and for every acknowledgement of the same
    /// connection before it (MQTT 5 §4.6: acknowledgements keep the order of the PUBLISHes).
    /// If `completion` fails with an ``MQTTTapFailure``, an MQTT 5 publisher receives its reason
    /// code and reason string (any other error: 0x80, unspecified error, without a reason
    /// string); MQTT 3.1.1 has no negative acknowledgement, so a 3.1.1 publisher is disconnected
    /// instead and resends the message when it reconnects with a persistent session. Either way
    /// the broker logs one line. QoS 0 messages have nothing to acknowledge (a failure is only
    /// logged), but their completions count against
    /// ``BrokerConfiguration/Limits/maximumPendingCompletions`` like those of QoS 1/2: past it
    /// the broker stops reading from the connection until fewer than half are pending.
    ///
    /// The future may complete on any event loop. It must complete eventually: the broker holds
    /// the connection's later acknowledgements behind it.
    case acceptAfter(EventLoopFuture<Void>)
    /// Like ``consume``, but acknowledge only when `completion` succeeds; a failure is answered
    /// as for ``acceptAfter(_:)``.
    case consumeAfter(EventLoopFuture<Void>)
}

/// Why the platform could not finish its work on a message: the error to fail an
/// ``MQTTTapDecision/acceptAfter(_:)`` or ``MQTTTapDecision/consumeAfter(_:)`` completion with.
/// An MQTT 5 publisher receives ``reasonCode`` and ``reason`` in its PUBACK/PUBREC.
public struct MQTTTapFailure: Error, Sendable, Hashable {
    /// An MQTT 5 error reason code allowed in PUBACK/PUBREC: 0x80 unspecified error, 0x83
    /// implementation specific error, 0x87 not authorized, 0x90 topic name invalid, 0x97 quota
    /// exceeded, 0x99 payload format invalid. A success code (below 0x80) is sent as 0x80.
    public var reasonCode: ReasonCode
    /// Sent as the MQTT 5 reason string (unless the client asked for no problem information);
    /// the device sees it, so it must not carry secrets.
    public var reason: String?

    public init(reasonCode: ReasonCode, reason: String? = nil) {
        self.reasonCode = reasonCode
        self.reason = reason
    }
}

/// Sees every PUBLISH the broker accepts from a client, after authorization and before routing:
/// the platform's ingress. Called on the publisher's event loop; must not block (hand slow work
/// to a task and answer through ``MQTTBroker/publish(topic:payload:qos:retain:properties:)``, or
/// return ``MQTTTapDecision/acceptAfter(_:)`` to acknowledge only once that work is done).
/// Topics are internal names (after the principal's ``MQTTTopicMapping``). Messages the
/// platform publishes itself do not pass through the tap. A client's will passes through it when
/// published: ``MQTTTapDecision/acceptAfter(_:)`` routes it like ``MQTTTapDecision/accept``,
/// ``MQTTTapDecision/consumeAfter(_:)`` drops it like ``MQTTTapDecision/consume`` (there is no
/// publisher left to acknowledge).
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
