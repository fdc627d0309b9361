import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import NIOCore
import NIOPosix

/// The device side of twins over MQTT, three conventions on one ``TwinService`` (topics as the
/// device writes them; inside they are its `$tenants/{t}/devices/{d}/...` subtree):
///
/// - native: `devices/{id}/twin/{get,update,delete}` (named twins under
///   `devices/{id}/twin/name/{name}/...`), answered on `.../{op}/accepted|rejected`; pushes on
///   `.../twin/delta` and `.../twin/documents`; times in milliseconds;
/// - AWS IoT shadows: `$aws/things/{id or name}/shadow/{get,update,delete}` (named shadows
///   under `.../shadow/name/{name}/...`), answered on `.../accepted|rejected`; pushes on
///   `.../update/delta` and `.../update/documents`; times in seconds, as AWS does;
/// - ThingsBoard attributes: a publish to `v1/devices/me/attributes` sets client attributes
///   (= reported); `v1/devices/me/attributes/request/{id}` is answered on
///   `.../attributes/response/{id}`; shared attributes (= desired) are pushed to
///   `v1/devices/me/attributes` when they change (removed ones as `{"deleted": [...]}`).
///
/// Requests are consumed (never routed) and acknowledged once handled; each device's requests
/// and the pushes that follow them run in order.
struct MQTTTwinAdapter: Sendable {
    let twins: TwinService
    let broker: BrokerReference
    let logger: Logger
    let queue = KeyedSerialQueue()

    /// The convention of a request.
    enum Convention: Sendable {
        case native, aws
    }

    /// What a device asked for.
    enum Operation: String, Sendable {
        case get, update, delete
    }

    init(twins: TwinService, broker: BrokerReference, logger: Logger) {
        self.twins = twins
        self.broker = broker
        self.logger = logger
    }

    /// Starts pushing every stored twin change to the device (delta, documents, shared
    /// attributes). Call once.
    func start() {
        let adapter = self
        twins.observe { change in adapter.push(change) }
    }

    /// The decision for a device's message, or nil when it is not a twin request.
    func inspect(_ message: MQTTTapMessage, subtree: String, tenantID: String, deviceID: String) -> MQTTTapDecision? {
        let topic = message.topic
        guard topic.utf8.count > subtree.utf8.count + 1, topic.hasPrefix(subtree),
            topic.utf8[topic.utf8.index(topic.utf8.startIndex, offsetBy: subtree.utf8.count)] == UInt8(ascii: "/")
        else { return nil }
        let rest = topic.dropFirst(subtree.count + 1)
        let levels = rest.split(separator: "/", omittingEmptySubsequences: false)
        let device = DeviceRef(tenantID: tenantID, deviceID: deviceID, subtree: subtree)
        let work: @Sendable () async -> Void
        switch levels.first ?? "" {
        case "twin":
            guard let routed = Self.route(levels.dropFirst()) else { return nil }
            let (name, operation) = routed
            let prefix = subtree + "/twin" + (name.isEmpty ? "" : "/name/\(name)")
            work = {
                await handle(
                    operation,
                    name: name,
                    convention: .native,
                    prefix: prefix,
                    payload: message.payload,
                    device: device
                )
            }
        case "$aws":
            guard levels.count > 2, levels[1] == "shadow", let routed = Self.route(levels.dropFirst(2)) else {
                return nil
            }
            let (name, operation) = routed
            let prefix = subtree + "/$aws/shadow" + (name.isEmpty ? "" : "/name/\(name)")
            work = {
                await handle(
                    operation,
                    name: name,
                    convention: .aws,
                    prefix: prefix,
                    payload: message.payload,
                    device: device
                )
            }
        case "attributes":
            if levels.count == 1 {
                work = { await clientAttributes(message.payload, device: device) }
            } else if levels.count == 3, levels[1] == "request", !levels[2].isEmpty {
                let response = subtree + "/attributes/response/" + levels[2]
                work = { await attributeRequest(message.payload, respondTo: response, device: device) }
            } else {
                return nil
            }
        default:
            return nil
        }
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: Void.self)
        queue.enqueue(device.queueKey) {
            await work()
            done.succeed()
        }
        return .consumeAfter(done.futureResult)
    }

    /// `{get|update|delete}` or `name/{name}/{get|update|delete}` → (name, operation).
    static func route(_ levels: ArraySlice<Substring>) -> (String, Operation)? {
        let levels = Array(levels)
        if levels.count == 1, let operation = Operation(rawValue: String(levels[0])) { return ("", operation) }
        if levels.count == 3, levels[0] == "name", let operation = Operation(rawValue: String(levels[2])) {
            return (String(levels[1]), operation)
        }
        return nil
    }

    /// A device as the adapter addresses it.
    struct DeviceRef: Sendable {
        var tenantID: String
        var deviceID: String
        var subtree: String

        var queueKey: String { tenantID + "/" + deviceID }
        var actor: AuditActor { AuditActor(kind: .device, id: deviceID) }
    }

    // MARK: native and AWS requests

    private func handle(
        _ operation: Operation,
        name: String,
        convention: Convention,
        prefix: String,
        payload: ByteBuffer,
        device: DeviceRef
    ) async {
        let clock: TwinMessages.Clock = convention == .aws ? .seconds : .milliseconds
        let now = TwinService.currentMilliseconds()
        let reply = prefix + "/" + operation.rawValue
        // Larger than any twin may be: refused before parsing.
        guard payload.readableBytes <= twins.limits.maximumDocumentBytes * 2 + 4096 else {
            let refusal = TwinMessages.Refusal(
                code: 413,
                message: "The payload exceeds the maximum size allowed (twin.max_document_bytes)"
            )
            await publish(reply + "/rejected", TwinMessages.rejected(refusal, clock: clock, now: now), device: device)
            return
        }
        let request: TwinMessages.Request
        switch TwinMessages.request(Data(payload.readableBytesView)) {
        case .failure(let refusal):
            await publish(reply + "/rejected", TwinMessages.rejected(refusal, clock: clock, now: now), device: device)
            return
        case .success(let parsed):
            request = parsed
        }
        let key = TwinKey(tenantID: device.tenantID, deviceID: device.deviceID, name: name)
        do {
            if !name.isEmpty { try TwinKey.validate(name: name) }
            switch operation {
            case .get:
                let document = try await twins.twin(key)
                if convention == .aws, !document.exists {
                    throw TwinMessages.Refusal(
                        code: 404,
                        message: "No shadow exists with name: '\(name.isEmpty ? "Classic" : name)'",
                        clientToken: request.clientToken
                    )
                }
                await publish(
                    reply + "/accepted",
                    TwinMessages.document(document, clock: clock, now: now, clientToken: request.clientToken),
                    device: device
                )
            case .update:
                guard request.hasState else {
                    throw TwinMessages.Refusal(
                        code: 400,
                        message: "Missing required node: state",
                        clientToken: request.clientToken
                    )
                }
                guard request.desired != nil || request.reported != nil else {
                    throw TwinMessages.Refusal(
                        code: 400,
                        message: "State contains no desired or reported node",
                        clientToken: request.clientToken
                    )
                }
                let result = try await twins.update(
                    key,
                    desired: request.desired,
                    reported: request.reported,
                    expectedVersion: request.version,
                    actor: device.actor,
                    clientToken: request.clientToken
                )
                await publish(
                    reply + "/accepted",
                    TwinMessages.updateAccepted(request, current: result.current, clock: clock, now: now),
                    device: device
                )
            case .delete:
                let result = try await twins.delete(
                    key,
                    expectedVersion: request.version,
                    actor: device.actor,
                    clientToken: request.clientToken
                )
                await publish(
                    reply + "/accepted",
                    TwinMessages.deleteAccepted(
                        version: result.current.version,
                        clock: clock,
                        now: now,
                        clientToken: request.clientToken
                    ),
                    device: device
                )
            }
        } catch let refusal as TwinMessages.Refusal {
            await publish(reply + "/rejected", TwinMessages.rejected(refusal, clock: clock, now: now), device: device)
        } catch let error as TwinError {
            var message = error.message
            if error.code == .versionConflict { message = "Version conflict: " + message }
            if error.code == .notFound, convention == .aws {
                message = "No shadow exists with name: '\(name.isEmpty ? "Classic" : name)'"
            }
            let refusal = TwinMessages.Refusal(
                code: error.code.status,
                message: message,
                clientToken: request.clientToken
            )
            await publish(reply + "/rejected", TwinMessages.rejected(refusal, clock: clock, now: now), device: device)
        } catch {
            logger.error(
                "twin request failed",
                metadata: [
                    "device.id": "\(device.deviceID)", "twin.operation": "\(operation.rawValue)", "error": "\(error)",
                ]
            )
            let refusal = TwinMessages.Refusal(
                code: 500,
                message: "Internal service failure",
                clientToken: request.clientToken
            )
            await publish(reply + "/rejected", TwinMessages.rejected(refusal, clock: clock, now: now), device: device)
        }
    }

    // MARK: ThingsBoard attributes

    private func clientAttributes(_ payload: ByteBuffer, device: DeviceRef) async {
        guard let value = JSONValue.parse(Data(payload.readableBytesView)), case .object = value else {
            logger.info("client attributes refused: not a JSON object", metadata: ["device.id": "\(device.deviceID)"])
            return
        }
        do {
            try await twins.update(
                TwinKey(tenantID: device.tenantID, deviceID: device.deviceID),
                reported: value,
                actor: device.actor
            )
        } catch let error as TwinError {
            logger.info(
                "client attributes refused",
                metadata: ["device.id": "\(device.deviceID)", "twin.reason": "\(error.message)"]
            )
        } catch {
            logger.error(
                "client attributes not stored",
                metadata: ["device.id": "\(device.deviceID)", "error": "\(error)"]
            )
        }
    }

    private func attributeRequest(_ payload: ByteBuffer, respondTo topic: String, device: DeviceRef) async {
        let request = JSONValue.parse(Data(payload.readableBytesView))
        do {
            let document = try await twins.twin(TwinKey(tenantID: device.tenantID, deviceID: device.deviceID))
            await publish(topic, TwinMessages.attributeResponse(request, document: document), device: device)
        } catch {
            logger.error(
                "attribute request failed",
                metadata: ["device.id": "\(device.deviceID)", "error": "\(error)"]
            )
        }
    }

    // MARK: pushes

    /// Sends a stored change to the device, after whatever of its requests is running.
    private func push(_ change: TwinChange) {
        let device = DeviceRef(
            tenantID: change.key.tenantID,
            deviceID: change.key.deviceID,
            subtree: AccessPrincipal.deviceTopics(tenantID: change.key.tenantID, deviceID: change.key.deviceID)
        )
        queue.enqueue(device.queueKey) { await pushNow(change, device: device) }
    }

    private func pushNow(_ change: TwinChange, device: DeviceRef) async {
        let name = change.key.name
        let native = device.subtree + "/twin" + (name.isEmpty ? "" : "/name/\(name)")
        let aws = device.subtree + "/$aws/shadow" + (name.isEmpty ? "" : "/name/\(name)")
        if change.operation == .update {
            let token = change.clientToken
            // AWS also announces updates made elsewhere (its REST API; here the operator's) on
            // update/accepted; a device's own requests were answered there already.
            if change.actor.kind != .device {
                let request = TwinMessages.Request(
                    desired: change.desiredPatch,
                    reported: change.reportedPatch,
                    hasState: true
                )
                await publish(
                    aws + "/update/accepted",
                    TwinMessages.updateAccepted(
                        request,
                        current: change.current,
                        clock: .seconds,
                        now: change.current.timestamp
                    ),
                    device: device
                )
            }
            await publish(
                native + "/documents",
                TwinMessages.documents(
                    previous: change.previous,
                    current: change.current,
                    clock: .milliseconds,
                    clientToken: token
                ),
                device: device
            )
            await publish(
                aws + "/update/documents",
                TwinMessages.documents(
                    previous: change.previous,
                    current: change.current,
                    clock: .seconds,
                    clientToken: token
                ),
                device: device
            )
            if change.desiredPatch != nil, !change.current.delta.isEmpty {
                await publish(
                    native + "/delta",
                    TwinMessages.delta(change.current, clock: .milliseconds, clientToken: token),
                    device: device
                )
                await publish(
                    aws + "/update/delta",
                    TwinMessages.delta(change.current, clock: .seconds, clientToken: token),
                    device: device
                )
            }
        }
        if name.isEmpty, change.desiredChanged {
            let shared = TwinMessages.sharedAttributeChanges(
                previous: change.previous.desired,
                current: change.current.desired
            )
            if let updated = shared.updated { await publish(device.subtree + "/attributes", updated, device: device) }
            if let deleted = shared.deleted { await publish(device.subtree + "/attributes", deleted, device: device) }
        }
    }

    private func publish(_ topic: String, _ value: JSONValue, device: DeviceRef) async {
        guard let broker = broker.value else { return }
        do {
            try await broker.publish(topic: topic, payload: ByteBuffer(string: value.jsonText), qos: .atLeastOnce)
        } catch {
            logger.debug(
                "could not publish a twin message",
                metadata: ["device.id": "\(device.deviceID)", "error": "\(error)"]
            )
        }
    }
}
