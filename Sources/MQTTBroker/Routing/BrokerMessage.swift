#if canImport(Glibc)
import Glibc
#endif
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
    /// Identity in the session store; 0 when the broker keeps no durable state.
    let id: Int64
    /// The platform's tag for a message it wants to hear was delivered
    /// (``MQTTConnectionObserver/delivered(_:tag:)``); 0 for none. Not stored: a message
    /// recovered after a restart is delivered untagged.
    let deliveryTag: UInt64

    init(
        topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: MQTTProperties, origin: String, expiresAt: NIODeadline?,
        id: Int64 = 0, deliveryTag: UInt64 = 0
    ) {
        self.id = id
        self.deliveryTag = deliveryTag
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.origin = origin
        self.expiresAt = expiresAt
    }

    /// Builds the routed message from a client's PUBLISH (topic alias already resolved).
    convenience init(publish: PublishPacket, topic: String, origin: String, now: NIODeadline, id: Int64 = 0, deliveryTag: UInt64 = 0) {
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
        self.init(
            topic: topic, payload: publish.payload, qos: publish.qos, retain: publish.retain, properties: properties,
            origin: origin, expiresAt: expiresAt, id: id, deliveryTag: deliveryTag
        )
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
        return BrokerMessage(
            topic: topic, payload: copy, qos: qos, retain: retain, properties: properties, origin: origin, expiresAt: expiresAt, id: id,
            deliveryTag: deliveryTag
        )
    }

    /// The same message with another retain flag.
    func with(retain: Bool) -> BrokerMessage {
        if retain == self.retain { return self }
        return BrokerMessage(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties, origin: origin, expiresAt: expiresAt, id: id)
    }

    /// The message as the session store keeps it; expiry becomes wall-clock time, since the
    /// event loops' clock does not survive a restart.
    func persisted(now: NIODeadline, wallClock: WallClock) -> PersistedMessage {
        var encodedProperties = ByteBuffer()
        if !properties.isEmpty { properties.write(to: &encodedProperties) }
        return PersistedMessage(
            id: id, topic: topic, payload: payload, qos: qos, retain: retain, properties: encodedProperties, origin: origin,
            expiresAt: expiresAt.map { wallClock.milliseconds(at: $0, now: now) }
        )
    }

    /// A message read back from the session store.
    convenience init(recovered message: PersistedMessage, now: NIODeadline, wallClock: WallClock) {
        var encoded = message.properties
        let properties = encoded.readableBytes == 0 ? MQTTProperties() : ((try? MQTTProperties.read(from: &encoded, allowed: .publish)) ?? MQTTProperties())
        self.init(
            topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, properties: properties,
            origin: message.origin, expiresAt: message.expiresAt.map { wallClock.deadline(at: $0, now: now) }, id: message.id
        )
    }
}

/// Converts between the event loops' monotonic clock and wall-clock milliseconds (Unix time),
/// which is what the session store keeps.
struct WallClock: Sendable {
    /// Milliseconds since 1970 now.
    var nowMilliseconds: @Sendable () -> Int64 = {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    func milliseconds(at deadline: NIODeadline, now: NIODeadline) -> Int64 {
        nowMilliseconds() + (deadline - now).nanoseconds / 1_000_000
    }

    func deadline(at milliseconds: Int64, now: NIODeadline) -> NIODeadline {
        now + .milliseconds(milliseconds - nowMilliseconds())
    }
}
