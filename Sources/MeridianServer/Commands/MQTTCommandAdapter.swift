import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import NIOCore
import NIOPosix

/// The device side of commands: a device's answer — PUBLISH to `devices/{id}/commands/response/{commandId}`
/// (MQTT 5 and 3.1.1) or `v1/devices/me/rpc/response/{commandId}` (ThingsBoard), both inside
/// its `$tenants/{t}/devices/{d}` subtree — is consumed (never routed) and recorded.
///
/// An answer for a command that is not this device's, is unknown, or is finished is refused and
/// not recorded: MQTT 5 publishers get PUBACK 0x87 (not authorized: no command of this device
/// waits under that id — the same for another device's, so ids are not revealed) or 0x83 (the
/// command is finished); MQTT 3.1.1 has no negative acknowledgement, so the answer is
/// acknowledged and the reason published to `devices/{id}/errors`. Either way one log line.
struct MQTTCommandAdapter: Sendable {
    let service: CommandService
    let broker: BrokerReference
    let logger: Logger

    /// Largest answer read (larger ones are refused).
    static let maximumAnswerSize = 262_144

    /// What an answer's topic names.
    enum AnsweredCommand: Equatable {
        /// A command id (`devices/{id}/commands/response/{commandId}`).
        case id(String)
        /// A ThingsBoard request id (`v1/devices/me/rpc/response/{requestId}`, a number).
        case thingsBoard(Int)
    }

    /// The command an internal topic answers, or nil when it is no answer.
    static func answeredCommand(topic: String, subtree: String) -> AnsweredCommand? {
        guard topic.hasPrefix(subtree) else { return nil }
        let rest = topic.utf8.dropFirst(subtree.utf8.count)
        for prefix in ["/commands/response/", "/rpc/response/"] where rest.starts(with: prefix.utf8) {
            let id = String(decoding: rest.dropFirst(prefix.utf8.count), as: UTF8.self)
            guard !id.isEmpty, !id.contains("/") else { return nil }
            if prefix == "/rpc/response/", let number = Int(id), number > 0 { return .thingsBoard(number) }
            return .id(id)
        }
        return nil
    }

    /// The command id an answer is for (nil: no command of the device waits under that number).
    private static func resolve(_ answered: AnsweredCommand, service: CommandService, tenantID: String, deviceID: String) async -> String? {
        switch answered {
        case .id(let id): id
        case .thingsBoard(let number): await service.awaitingCommand(thingsBoardRequestID: number, tenantID: tenantID, deviceID: deviceID)
        }
    }

    /// The decision for a device's message, or nil when it is not a command answer.
    func inspect(_ message: MQTTTapMessage, subtree: String, tenantID: String, deviceID: String) -> MQTTTapDecision? {
        guard let answered = Self.answeredCommand(topic: message.topic, subtree: subtree) else { return nil }
        let commandID: String
        switch answered {
        case .id(let id): commandID = id
        case .thingsBoard(let number): commandID = "\(number)"
        }
        let isV5 = message.protocolVersion == .v5
        guard message.payload.readableBytes <= Self.maximumAnswerSize,
            let outcome = message.payload.withUnsafeReadableBytes({ CommandOutcome.parse($0) })
        else {
            let reason = "the answer must be UTF-8 (JSON) of at most \(Self.maximumAnswerSize) bytes"
            logger.info("command answer refused: bad payload", metadata: ["device.id": "\(deviceID)", "command.id": "\(commandID)"])
            if isV5 { return .reject(.payloadFormatInvalid, reason: reason) }
            report(reason, commandID: commandID, subtree: subtree, deviceID: deviceID)
            return .consume
        }
        let service = self.service
        if isV5 {
            let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
            let promise = loop.makePromise(of: Void.self)
            promise.completeWithTask {
                guard let resolved = await Self.resolve(answered, service: service, tenantID: tenantID, deviceID: deviceID) else {
                    throw Self.failure(for: .unknown)!
                }
                let verdict = await service.answer(commandID: resolved, tenantID: tenantID, deviceID: deviceID, outcome: outcome)
                if let failure = Self.failure(for: verdict) { throw failure }
            }
            return .consumeAfter(promise.futureResult)
        }
        Task {
            let resolved = await Self.resolve(answered, service: service, tenantID: tenantID, deviceID: deviceID)
            let verdict: CommandAnswerVerdict =
                if let resolved { await service.answer(commandID: resolved, tenantID: tenantID, deviceID: deviceID, outcome: outcome) } else { .unknown }
            if let failure = Self.failure(for: verdict) {
                report(failure.reason ?? "refused", commandID: commandID, subtree: subtree, deviceID: deviceID)
            }
        }
        return .consume
    }

    /// The refusal an MQTT 5 device gets for a verdict (nil: accepted).
    static func failure(for verdict: CommandAnswerVerdict) -> MQTTTapFailure? {
        switch verdict {
        case .accepted:
            nil
        case .unknown, .notYours:
            MQTTTapFailure(reasonCode: .notAuthorized, reason: "no command of this device waits for an answer under this id")
        case .finished:
            MQTTTapFailure(reasonCode: .implementationSpecificError, reason: "the command is finished (answered, timed out, expired or one-way)")
        }
    }

    /// Tells an MQTT 3.1.1 device why its answer was refused, on `devices/{id}/errors`.
    private func report(_ reason: String, commandID: String, subtree: String, deviceID: String) {
        guard let broker = broker.value else { return }
        let body = JSONValue.object(["commandId": .string(commandID), "error": .string(reason)])
        let payload = ByteBuffer(bytes: DeviceGateway.json(body))
        let logger = self.logger
        Task {
            do {
                try await broker.publish(topic: subtree + "/errors", payload: payload, qos: .atLeastOnce)
            } catch {
                logger.debug("could not publish a command error", metadata: ["device.id": "\(deviceID)", "error": "\(error)"])
            }
        }
    }
}
