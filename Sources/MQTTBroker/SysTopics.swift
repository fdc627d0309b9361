import Atomics
import MQTTCore
import NIOCore

/// Publishes the broker's `$SYS/broker/...` topics (retained, QoS 0) at a fixed interval, as
/// Mosquitto does, so standard tools can watch the broker.
struct SysTopics {
    let core: BrokerCore

    /// Publishes every topic once, from `loop`.
    func publish(on loop: LoopContext) {
        let metrics = core.metrics
        let uptime = (NIODeadline.now() - core.startedAt).nanoseconds / 1_000_000_000
        let values: [(String, String)] = [
            ("version", core.configuration.version),
            ("uptime", "\(uptime) seconds"),
            ("clients/connected", "\(metrics.connections.load(ordering: .relaxed))"),
            ("clients/total", "\(core.registry.count)"),
            ("messages/received", "\(metrics.messagesReceived.load(ordering: .relaxed))"),
            ("messages/sent", "\(metrics.messagesSent.load(ordering: .relaxed))"),
            ("messages/dropped", "\(metrics.messagesDropped.load(ordering: .relaxed))"),
            ("bytes/received", "\(metrics.bytesReceived.load(ordering: .relaxed))"),
            ("bytes/sent", "\(metrics.bytesSent.load(ordering: .relaxed))"),
            ("subscriptions/count", "\(metrics.subscriptions.load(ordering: .relaxed))"),
            ("retained messages/count", "\(core.retained.count)"),
        ]
        for (name, value) in values {
            let message = BrokerMessage(
                topic: "$SYS/broker/" + name,
                payload: ByteBuffer(string: value),
                qos: .atMostOnce,
                retain: true,
                properties: MQTTProperties(),
                origin: "",
                expiresAt: nil
            )
            loop.publishInternal(message)
        }
    }
}
