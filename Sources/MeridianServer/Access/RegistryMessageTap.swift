import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import NIOConcurrencyHelpers
import NIOCore

/// Takes over the MQTT requests the platform answers itself (ThingsBoard-compatible):
///
/// - provisioning: a client connected as `provision` publishes JSON to `/provision/request`
///   (`provisionDeviceKey`, `provisionDeviceSecret`, optional `deviceName`, `credentialsType`
///   `ACCESS_TOKEN` or `MQTT_BASIC`, `token`, `username`, `password`); the answer goes to its
///   private `/provision/response`: `{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN",
///   "credentialsValue":"<token>"}` or `{"status":"FAILURE","errorMsg":"..."}`;
/// - claiming: a device publishes `{"secretKey": "...", "durationMs": 86400000}` to
///   `v1/devices/me/claim` (or `devices/{id}/claim`, the same topic inside).
///
/// Both are consumed (acknowledged, never routed) and handled in a task, so the event loop
/// never waits for the registry. Every other message passes.
struct RegistryMessageTap: MQTTMessageTap {
    let registry: any AccessRegistry
    let broker: BrokerReference
    let logger: Logger
    /// Telemetry ingress (nil: telemetry is routed like any message, not stored).
    let telemetry: MQTTTelemetryAdapter?
    /// Twin requests and ThingsBoard attributes (nil: routed like any message).
    var twins: MQTTTwinAdapter? = nil
    /// Device answers to commands (nil: routed like any message).
    var commands: MQTTCommandAdapter? = nil

    /// Longest request payload read (larger ones are answered with a failure).
    static let maximumRequestSize = 16_384
    /// How long a claim code lasts when the device gives no `durationMs`.
    static let defaultClaimDuration: TimeInterval = 24 * 3600

    /// Unmapped principals are anonymous clients, whose messages the tap never handles.
    var inspectsUnmappedPrincipals: Bool { false }

    func inspect(_ message: MQTTTapMessage, from principal: MQTTPrincipal) -> MQTTTapDecision {
        guard let kind = AccessPrincipal.kind(of: principal) else { return .accept }
        switch kind {
        case .provisioning:
            guard let request = principal.attributes[AccessPrincipal.publishKey], message.topic == request else { return .accept }
            let response = principal.attributes[AccessPrincipal.subscribeKey] ?? ""
            let payload = message.payload
            let remote = principal.clientIdentifier
            Task { await provision(payload, respondingTo: response, client: remote) }
            return .consume
        case .device:
            guard let subtree = principal.attributes[AccessPrincipal.publishKey], let deviceID = principal.attributes[AccessPrincipal.deviceKey] else {
                return .accept
            }
            if let telemetry, let tenantID = principal.attributes[AccessPrincipal.tenantKey],
                let decision = telemetry.inspect(message, subtree: subtree, tenantID: tenantID, deviceID: deviceID)
            {
                return decision
            }
            if let twins, let tenantID = principal.attributes[AccessPrincipal.tenantKey],
                let decision = twins.inspect(message, subtree: subtree, tenantID: tenantID, deviceID: deviceID)
            {
                return decision
            }
            if let commands, let tenantID = principal.attributes[AccessPrincipal.tenantKey],
                let decision = commands.inspect(message, subtree: subtree, tenantID: tenantID, deviceID: deviceID)
            {
                return decision
            }
            guard message.topic.utf8.count == subtree.utf8.count + 6, message.topic.hasSuffix("/claim"), message.topic.hasPrefix(subtree) else {
                return .accept
            }
            let payload = message.payload
            Task { await claim(payload, deviceID: deviceID) }
            return .consume
        default:
            return .accept
        }
    }

    // MARK: provisioning

    /// The answer to a provisioning request, as JSON.
    func provisioningResponse(for payload: ByteBuffer) async -> [String: Any] {
        guard payload.readableBytes <= Self.maximumRequestSize,
            let object = (try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView))) as? [String: Any]
        else {
            return Self.failure("the request must be a JSON object")
        }
        guard let key = object["provisionDeviceKey"] as? String, !key.isEmpty else {
            return Self.failure("provisionDeviceKey is required")
        }
        guard let secret = object["provisionDeviceSecret"] as? String, !secret.isEmpty else {
            return Self.failure("provisionDeviceSecret is required")
        }
        let deviceName = object["deviceName"] as? String
        let type = (object["credentialsType"] as? String) ?? "ACCESS_TOKEN"
        let credential: CredentialRequest
        switch type {
        case "ACCESS_TOKEN":
            credential = .token(object["token"] as? String)
        case "MQTT_BASIC":
            guard let username = object["username"] as? String, let password = object["password"] as? String else {
                return Self.failure("MQTT_BASIC needs username and password")
            }
            credential = .password(username: username, password: password)
        default:
            return Self.failure("credentialsType must be ACCESS_TOKEN or MQTT_BASIC")
        }
        do {
            let (device, issued) = try await registry.provision(
                ProvisionRequest(provisionKey: key, provisionSecret: secret, deviceName: deviceName, credential: credential)
            )
            logger.info("device provisioned over MQTT", metadata: ["device.id": "\(device.id)", "tenant.id": "\(device.tenantID)"])
            switch issued.credential.type {
            case .password:
                return [
                    "status": "SUCCESS", "credentialsType": "MQTT_BASIC", "deviceId": device.id,
                    "credentialsValue": ["clientId": device.id, "userName": issued.credential.username ?? "", "password": (object["password"] as? String) ?? ""],
                ]
            default:
                return ["status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": issued.token ?? "", "deviceId": device.id]
            }
        } catch let error as RegistryError {
            logger.info("provisioning refused", metadata: ["provision.reason": "\(error.code)"])
            return Self.failure(error.message)
        } catch {
            logger.error("provisioning failed", metadata: ["error": "\(error)"])
            return Self.failure("provisioning failed")
        }
    }

    private func provision(_ payload: ByteBuffer, respondingTo topic: String, client: String) async {
        let response = await provisioningResponse(for: payload)
        guard let broker = broker.value, !topic.isEmpty,
            let data = try? JSONSerialization.data(withJSONObject: response, options: [.sortedKeys])
        else { return }
        do {
            try await broker.publish(topic: topic, payload: ByteBuffer(bytes: data), qos: .atLeastOnce)
        } catch {
            logger.error("could not publish the provisioning response", metadata: ["mqtt.client_id": "\(client)", "error": "\(error)"])
        }
    }

    static func failure(_ message: String) -> [String: Any] {
        ["status": "FAILURE", "errorMsg": message]
    }

    // MARK: claiming

    /// Sets the device's claim code from a claim request; returns a problem, or nil when done.
    @discardableResult
    func claim(_ payload: ByteBuffer, deviceID: String) async -> String? {
        guard payload.readableBytes <= Self.maximumRequestSize,
            let object = (try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView))) as? [String: Any],
            let code = object["secretKey"] as? String, !code.isEmpty
        else {
            logger.info("claim request refused: secretKey missing", metadata: ["device.id": "\(deviceID)"])
            return "secretKey is required"
        }
        var duration = Self.defaultClaimDuration
        if let milliseconds = object["durationMs"] as? NSNumber {
            guard milliseconds.doubleValue > 0 else {
                logger.info("claim request refused: durationMs must be positive", metadata: ["device.id": "\(deviceID)"])
                return "durationMs must be positive"
            }
            duration = milliseconds.doubleValue / 1000
        }
        do {
            try await registry.setClaimCode(deviceID: deviceID, code: code, duration: duration, actor: AuditActor(kind: .device, id: deviceID))
            logger.info("claim code set over MQTT", metadata: ["device.id": "\(deviceID)"])
            return nil
        } catch let error as RegistryError {
            logger.info("claim request refused", metadata: ["device.id": "\(deviceID)", "claim.reason": "\(error.message)"])
            return error.message
        } catch {
            logger.error("claim request failed", metadata: ["device.id": "\(deviceID)", "error": "\(error)"])
            return "claim failed"
        }
    }
}

/// The broker, once it exists (the hooks are created before it).
final class BrokerReference: Sendable {
    private let box = NIOLockedValueBox<MQTTBroker?>(nil)

    var value: MQTTBroker? { box.withLockedValue { $0 } }

    func set(_ broker: MQTTBroker) { box.withLockedValue { $0 = broker } }
}
