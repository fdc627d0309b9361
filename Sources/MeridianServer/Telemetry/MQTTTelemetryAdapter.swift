import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import Metrics
import NIOCore
import NIOPosix

/// The MQTT way in: a device's PUBLISH to `devices/{id}/telemetry` (or ThingsBoard's
/// `v1/devices/me/telemetry`; both are `$tenants/{t}/devices/{id}/telemetry` inside) becomes a
/// `DeviceMessage` for the pipeline. The payload is parsed on the event loop (the fast parser,
/// no Foundation decoding); the message is routed as usual and its PUBACK waits until it is
/// durable.
///
/// A payload that cannot be stored is refused whole: MQTT 5 publishers get PUBACK 0x99
/// (payload format invalid) with the reason string; MQTT 3.1.1 has no negative acknowledgement,
/// so the message is acknowledged, not stored, and the reason is published to the device's
/// `devices/{id}/errors` as `{"topic": "...", "error": "..."}`.
struct MQTTTelemetryAdapter: Sendable {
    let pipeline: TelemetryPipeline
    let broker: BrokerReference
    let logger: Logger
    private let refused = Counter(label: "meridian_telemetry_refused_total")

    init(pipeline: TelemetryPipeline, broker: BrokerReference, logger: Logger) {
        self.pipeline = pipeline
        self.broker = broker
        self.logger = logger
    }

    /// The decision for a device's message, or nil when it is not telemetry.
    func inspect(_ message: MQTTTapMessage, subtree: String, tenantID: String, deviceID: String) -> MQTTTapDecision? {
        guard message.topic.utf8.count == subtree.utf8.count + 10, message.topic.hasSuffix("/telemetry"), message.topic.hasPrefix(subtree) else {
            return nil
        }
        let now = TelemetryService.now()
        let result = message.payload.withUnsafeReadableBytes { bytes in
            TelemetryService.message(bytes, tenantID: tenantID, deviceID: deviceID, receivedAt: now)
        }
        switch result {
        case .failure(let error):
            refused.increment()
            logger.debug("telemetry refused", metadata: ["device.id": "\(deviceID)", "telemetry.reason": "\(error.reason)"])
            if message.protocolVersion == .v5 {
                return .reject(.payloadFormatInvalid, reason: error.reason)
            }
            reportError(error.reason, subtree: subtree, deviceID: deviceID)
            return .consume
        case .success(let deviceMessage):
            let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
            let stored = pipeline.submit(deviceMessage, on: loop).flatMapErrorThrowing { error in
                _ = error
                throw MQTTTapFailure(reasonCode: .unspecifiedError, reason: "telemetry could not be stored; send it again")
            }
            return .acceptAfter(stored)
        }
    }

    /// Tells an MQTT 3.1.1 device why its telemetry was refused, on `devices/{id}/errors`.
    private func reportError(_ reason: String, subtree: String, deviceID: String) {
        guard let broker = broker.value else { return }
        var json = TelemetryJSON()
        json.text = "{\"topic\":\"devices/"
        json.text += deviceID.replacingOccurrences(of: "\"", with: "")
        json.text += "/telemetry\",\"error\":"
        json.string(reason)
        json.text += "}"
        let payload = ByteBuffer(string: json.text)
        let logger = self.logger
        Task {
            do {
                try await broker.publish(topic: subtree + "/errors", payload: payload, qos: .atLeastOnce)
            } catch {
                logger.debug("could not publish a telemetry error", metadata: ["device.id": "\(deviceID)", "error": "\(error)"])
            }
        }
    }
}
