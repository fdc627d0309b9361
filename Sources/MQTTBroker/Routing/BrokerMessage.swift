import MQTTCore
import NIOCore

/// A message as the broker routes, queues and retains it. Immutable and shared by every
/// delivery it fans out to.
final class BrokerMessage: Sendable {
    let topic: String
    let payload: ByteBuffer
    let qos: QoS
    let retain: Bool
    /// Properties forwarded to subscribers (MQTT 5): payload format, content type, response
    /// topic, correlation data, user properties. Topic alias, subscription identifiers and
    /// message expiry are not kept here: they are per delivery (and a will's delay interval is
    /// not a PUBLISH property at all).
    let properties: MQTTProperties
    /// Client identifier of the publisher, for no-local; empty for broker-generated messages.
    let origin: String
    /// When the message expires (MQTT 5 message expiry interval), on the event loops' clock.
    let expiresAt: NIODeadline?

    init(topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: MQTTProperties, origin: String, expiresAt: NIODeadline?) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.origin = origin
        self.expiresAt = expiresAt
    }

    /// Builds the routed message from a client's PUBLISH (topic alias already resolved).
    convenience init(publish: PublishPacket, topic: String, origin: String, now: NIODeadline) {
        var properties = publish.properties
        var expiresAt: NIODeadline?
        if !properties.isEmpty {
            if let expiry = properties.messageExpiryInterval {
                expiresAt = now + .seconds(Int64(expiry))
            }
            properties.storage.removeAll {
                switch $0.identifier {
                case .topicAlias, .subscriptionIdentifier, .messageExpiryInterval, .willDelayInterval: return true
                default: return false
                }
            }
        }
        self.init(topic: topic, payload: publish.payload, qos: publish.qos, retain: publish.retain, properties: properties, origin: origin, expiresAt: expiresAt)
    }

    /// Whether the message has expired at `now`.
    @inline(__always)
    func isExpired(at now: NIODeadline) -> Bool {
        guard let expiresAt else { return false }
        return now >= expiresAt
    }

    /// Seconds left before expiry (at least 1 while unexpired), for the forwarded property.
    func remainingExpiry(at now: NIODeadline) -> UInt32? {
        guard let expiresAt else { return nil }
        let nanos = (expiresAt - now).nanoseconds
        if nanos <= 0 { return 0 }
        return UInt32(clamping: (nanos + 999_999_999) / 1_000_000_000)
    }

    /// A copy that owns exactly its bytes: a payload sliced from a large read buffer would
    /// otherwise keep the whole buffer alive while the message sits in a queue.
    func compacted() -> BrokerMessage {
        guard payload.storageCapacity > payload.readableBytes * 2 + 256 else { return self }
        var copy = ByteBufferAllocator().buffer(capacity: payload.readableBytes)
        copy.writeImmutableBuffer(payload)
        return BrokerMessage(topic: topic, payload: copy, qos: qos, retain: retain, properties: properties, origin: origin, expiresAt: expiresAt)
    }

    /// The same message with another retain flag.
    func with(retain: Bool) -> BrokerMessage {
        if retain == self.retain { return self }
        return BrokerMessage(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties, origin: origin, expiresAt: expiresAt)
    }
}
