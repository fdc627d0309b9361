import MQTTBroker
import MQTTCore
import NIOCore

/// Publishes commands through this node's broker, tagged so that the gateway hears when the
/// device acknowledged them.
struct BrokerCommandPublisher: CommandPublisher {
    let broker: BrokerReference

    func publish(topic: String, payload: ByteBuffer, properties: MQTTProperties, deliveryTag: UInt64) async throws -> Int {
        guard let broker = broker.value else { return 0 }
        return try await broker.publish(topic: topic, payload: payload, qos: .atLeastOnce, properties: properties, deliveryTag: deliveryTag)
    }
}
