import Foundation
import Logging
import MQTTBroker
import MQTTCore
import MeridianCore
import NIOCore
import Synchronization

/// Every way out to a device goes through here (DESIGN.md): it knows which devices are
/// connected to this node's broker and how each listens for commands (learned from what it
/// subscribes to), sends commands by that convention, and tells the ``CommandService`` when a
/// device can take its queued commands and when a sent command reached the device.
///
/// It is the broker's connection observer (`MQTTConnectionObserver`): connect, subscribe,
/// disconnect and delivery events arrive on the connections' event loops; it only updates a
/// table under a lock there and hands the rest to tasks.
///
/// Conventions, as the device sees its topics:
/// - MQTT 5 request/response: PUBLISH `devices/{id}/commands/{method}` (payload: the params)
///   with Response Topic `devices/{id}/commands/response/{commandId}` and Correlation Data
///   `{commandId}`; used for MQTT 5 connections subscribed to a filter matching it;
/// - MQTT 3.1.1: PUBLISH `devices/{id}/commands/request/{commandId}` with
///   `{"id","method","params"}`; the answer goes to `devices/{id}/commands/response/{commandId}`;
/// - ThingsBoard server-side RPC: PUBLISH `v1/devices/me/rpc/request/{requestId}` with
///   `{"method","params"}`; the answer goes to `v1/devices/me/rpc/response/{requestId}`. The
///   request id is a number (``Command/thingsBoardRequestID(_:)``): ThingsBoard's SDKs parse it
///   as one.
final class DeviceGateway: CommandTransport, Sendable {
    /// One connection of a device, as far as commands care.
    struct Connection: Sendable, Hashable {
        var connectionID: UInt64
        var tenantID: String
        var deviceID: String
        var protocolVersion: MQTTProtocolVersion
    }

    private struct Listener {
        var connection: Connection
        var conventions: Set<CommandConvention>
        var order: UInt64
    }

    private struct State {
        /// Connected devices ("tenant/device") and their connections.
        var devices: [String: [UInt64: Listener]] = [:]
        /// What each device last subscribed to: assumed again when it reconnects (a persistent
        /// session keeps its subscriptions without subscribing again).
        var remembered: [String: Set<CommandConvention>] = [:]
        /// Delivery tags of sent commands, to their ids.
        var tags: [UInt64: String] = [:]
        var nextTag: UInt64 = 0
        var order: UInt64 = 0
    }

    /// Most delivery tags remembered (older ones are forgotten: their commands stay `sent`).
    static let maximumTags = 100_000

    private let publisher: any CommandPublisher
    private let service: CommandService
    private let logger: Logger
    private let state = Mutex(State())

    init(publisher: any CommandPublisher, service: CommandService, logger: Logger) {
        self.publisher = publisher
        self.service = service
        self.logger = logger
    }

    private static func key(_ tenantID: String, _ deviceID: String) -> String { tenantID + "/" + deviceID }

    /// The command conventions a subscription to `filter` (internal name) receives, for a
    /// connection of `protocolVersion`.
    static func conventions(filter: String, tenantID: String, deviceID: String, protocolVersion: MQTTProtocolVersion) -> Set<CommandConvention> {
        let subtree = AccessPrincipal.deviceTopics(tenantID: tenantID, deviceID: deviceID)
        var result: Set<CommandConvention> = []
        if MQTTTopic.matches(filter: filter, name: subtree + "/rpc/request/1") {
            result.insert(.thingsBoard)
        }
        if MQTTTopic.matches(filter: filter, name: subtree + "/commands/request/x") {
            result.insert(.mqtt311)
        }
        if protocolVersion == .v5, MQTTTopic.matches(filter: filter, name: subtree + "/commands/x") {
            result.insert(.mqtt5)
        }
        return result
    }

    // MARK: connection events (event loop: no waiting)

    func connected(_ connection: Connection) {
        let key = Self.key(connection.tenantID, connection.deviceID)
        state.withLock { state in
            state.order += 1
            var conventions = state.remembered[key] ?? []
            if connection.protocolVersion != .v5 { conventions.remove(.mqtt5) }
            state.devices[key, default: [:]][connection.connectionID] = Listener(connection: connection, conventions: conventions, order: state.order)
        }
        // Its subscriptions may be known (remembered) or not yet (it subscribes next, or resumes a
        // session that has them: then sending probes for them).
        deliverQueued(connection)
    }

    func subscribed(_ connection: Connection, filters: [String]) {
        var learned: Set<CommandConvention> = []
        for filter in filters {
            learned.formUnion(Self.conventions(filter: filter, tenantID: connection.tenantID, deviceID: connection.deviceID, protocolVersion: connection.protocolVersion))
        }
        guard !learned.isEmpty else { return }
        let key = Self.key(connection.tenantID, connection.deviceID)
        state.withLock { state in
            state.order += 1
            var listener = state.devices[key]?[connection.connectionID] ?? Listener(connection: connection, conventions: [], order: state.order)
            listener.conventions.formUnion(learned)
            listener.order = state.order
            state.devices[key, default: [:]][connection.connectionID] = listener
            state.remembered[key] = listener.conventions
        }
        logger.debug("device listens for commands", metadata: ["device.id": "\(connection.deviceID)", "command.conventions": "\(learned.map(\.rawValue).sorted())"])
        deliverQueued(connection)
    }

    func disconnected(_ connection: Connection) {
        let key = Self.key(connection.tenantID, connection.deviceID)
        state.withLock { state in
            state.devices[key]?[connection.connectionID] = nil
            if state.devices[key]?.isEmpty == true { state.devices[key] = nil }
        }
    }

    func delivered(tag: UInt64) {
        guard let commandID = state.withLock({ $0.tags.removeValue(forKey: tag) }) else { return }
        let service = self.service
        Task { await service.delivered(commandID: commandID) }
    }

    private func deliverQueued(_ connection: Connection) {
        let service = self.service
        Task { await service.deliverQueued(tenantID: connection.tenantID, deviceID: connection.deviceID) }
    }

    // MARK: CommandTransport

    /// The order conventions are preferred (and probed) in.
    static let preference: [CommandConvention] = [.mqtt5, .thingsBoard, .mqtt311]

    func route(tenantID: String, deviceID: String) -> CommandConvention? {
        state.withLock { state in
            guard let listeners = state.devices[Self.key(tenantID, deviceID)]?.values, !listeners.isEmpty else { return nil }
            // The most recent connection that listens for commands.
            if let listener = listeners.filter({ !$0.conventions.isEmpty }).max(by: { $0.order < $1.order }) {
                return Self.preference.first { listener.conventions.contains($0) }
            }
            // Connected, but no command subscription seen (a resumed session keeps its
            // subscriptions without subscribing again): sending probes the conventions.
            let newest = listeners.max { $0.order < $1.order }
            return newest?.connection.protocolVersion == .v5 ? .mqtt5 : .thingsBoard
        }
    }

    func send(_ command: Command, by convention: CommandConvention) async -> CommandConvention? {
        let key = Self.key(command.tenantID, command.deviceID)
        // Probing: no connection of the device is known to listen; try each convention until
        // one reaches its session (the broker counts the sessions a publish was routed to).
        let probe = state.withLock { state -> (probing: Bool, v5: Bool) in
            let listeners = state.devices[key]?.values.map { $0 } ?? []
            let newest = listeners.max { $0.order < $1.order }
            return (!listeners.contains { !$0.conventions.isEmpty }, newest?.connection.protocolVersion == .v5)
        }
        var candidates = [convention]
        if probe.probing {
            candidates += Self.preference.filter { $0 != convention && (probe.v5 || $0 != .mqtt5) }
        }
        for candidate in candidates {
            switch await publish(command, by: candidate) {
            case .reached:
                if probe.probing { learn(key, candidate) }
                return candidate
            case .nobody:
                // Its subscription is gone: forget the convention until it subscribes again.
                if !probe.probing { forget(tenantID: command.tenantID, deviceID: command.deviceID, candidate) }
            case .failed:
                return nil
            }
        }
        return nil
    }

    private enum PublishOutcome {
        case reached, nobody, failed
    }

    /// Records that `key`'s connections listen by `convention` (found by probing).
    private func learn(_ key: String, _ convention: CommandConvention) {
        state.withLock { state in
            guard let listeners = state.devices[key] else { return }
            for id in listeners.keys { state.devices[key]?[id]?.conventions.insert(convention) }
            state.remembered[key, default: []].insert(convention)
        }
    }

    private func publish(_ command: Command, by convention: CommandConvention) async -> PublishOutcome {
        let message = Self.message(for: command, by: convention)
        service.publishing(commandID: command.id, by: convention)
        let tag = state.withLock { state -> UInt64 in
            state.nextTag &+= 1
            if state.tags.count >= Self.maximumTags, let oldest = state.tags.keys.min() { state.tags[oldest] = nil }
            state.tags[state.nextTag] = command.id
            return state.nextTag
        }
        do {
            let routed = try await publisher.publish(topic: message.topic, payload: message.payload, properties: message.properties, deliveryTag: tag)
            if routed == 0 {
                state.withLock { _ = $0.tags.removeValue(forKey: tag) }
                return .nobody
            }
            return .reached
        } catch {
            state.withLock { _ = $0.tags.removeValue(forKey: tag) }
            logger.error("could not publish a command", metadata: ["command.id": "\(command.id)", "device.id": "\(command.deviceID)", "error": "\(error)"])
            return .failed
        }
    }

    private func forget(tenantID: String, deviceID: String, _ convention: CommandConvention) {
        let key = Self.key(tenantID, deviceID)
        state.withLock { state in
            state.remembered[key]?.remove(convention)
            guard let listeners = state.devices[key] else { return }
            for id in listeners.keys { state.devices[key]?[id]?.conventions.remove(convention) }
        }
    }

    /// The PUBLISH that carries `command` by `convention` (internal topic name).
    static func message(for command: Command, by convention: CommandConvention) -> (topic: String, payload: ByteBuffer, properties: MQTTProperties) {
        let subtree = AccessPrincipal.deviceTopics(tenantID: command.tenantID, deviceID: command.deviceID)
        var properties = MQTTProperties()
        switch convention {
        case .mqtt5:
            properties.responseTopic = "devices/\(command.deviceID)/commands/response/\(command.id)"
            properties.correlationData = ByteBuffer(string: command.id)
            properties.contentType = "application/json"
            return (subtree + "/commands/" + command.method, ByteBuffer(bytes: Self.json(command.params)), properties)
        case .mqtt311:
            let body = JSONValue.object(["id": .string(command.id), "method": .string(command.method), "params": command.params])
            return (subtree + "/commands/request/" + command.id, ByteBuffer(bytes: Self.json(body)), properties)
        case .thingsBoard:
            let body = JSONValue.object(["method": .string(command.method), "params": command.params])
            return (subtree + "/rpc/request/\(Command.thingsBoardRequestID(command.id))", ByteBuffer(bytes: Self.json(body)), properties)
        }
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func json(_ value: JSONValue) -> Data {
        (try? encoder.encode(value)) ?? Data("null".utf8)
    }
}

/// Publishing a command to the broker (a protocol so that the gateway can be tested without one).
protocol CommandPublisher: Sendable {
    /// Publishes at QoS 1 to an internal topic; returns the number of sessions it was routed to.
    func publish(topic: String, payload: ByteBuffer, properties: MQTTProperties, deliveryTag: UInt64) async throws -> Int
}
