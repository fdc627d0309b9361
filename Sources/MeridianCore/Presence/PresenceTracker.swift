import Foundation
import Synchronization

/// One open device connection, as presence sees it.
public struct PresenceConnection: Sendable, Hashable {
    public var connectionID: UInt64
    public var tenantID: String
    public var deviceID: String
    public var address: String?
    /// `mqtt-3.1.1`, `mqtt-5.0`.
    public var protocolName: String
    /// `tcp`, `tls`, `websocket`, `secure-websocket`.
    public var transport: String
    /// Granted keep-alive, seconds (0: none).
    public var keepAlive: Int

    public init(connectionID: UInt64, tenantID: String, deviceID: String, address: String?, protocolName: String, transport: String, keepAlive: Int) {
        self.connectionID = connectionID
        self.tenantID = tenantID
        self.deviceID = deviceID
        self.address = address
        self.protocolName = protocolName
        self.transport = transport
        self.keepAlive = keepAlive
    }
}

/// Which devices are connected (to this server), per connection: a device is online while any
/// of its connections is open. Turns connects and disconnects into ``PresenceEvent``s and
/// remembers each device's last disconnect. Thread-safe; called from the broker's event loops,
/// so every method is short and never waits.
public final class PresenceTracker: Sendable {
    private struct Open: Sendable {
        var connection: PresenceConnection
        var since: Date
    }

    private struct Device: Sendable {
        var open: [UInt64: Open] = [:]
        /// The newest connection first seen.
        var newest: UInt64?
        var onlineSince: Date?
        var lastDisconnect: PresenceEvent?
    }

    private struct State: Sendable {
        var devices: [String: Device] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Records an open connection; returns its `connected` event.
    public func connected(_ connection: PresenceConnection, at time: Date) -> PresenceEvent {
        let time = Registry.milliseconds(time)
        return state.withLock { state in
            var device = state.devices[connection.deviceID] ?? Device()
            if device.open.isEmpty { device.onlineSince = time }
            device.open[connection.connectionID] = Open(connection: connection, since: time)
            device.newest = connection.connectionID
            state.devices[connection.deviceID] = device
            return PresenceEvent(
                tenantID: connection.tenantID, deviceID: connection.deviceID, kind: .connected, time: time, address: connection.address,
                protocolName: connection.protocolName, transport: connection.transport, connectionID: connection.connectionID, online: true
            )
        }
    }

    /// Records the end of a connection; returns its `disconnected` event, or nil for a
    /// connection that was not open (never connected, or already ended).
    public func disconnected(deviceID: String, connectionID: UInt64, reason: PresenceReason, reasonCode: UInt8?, at time: Date) -> PresenceEvent? {
        let time = Registry.milliseconds(time)
        return state.withLock { state -> PresenceEvent? in
            guard var device = state.devices[deviceID], let open = device.open.removeValue(forKey: connectionID) else { return nil }
            let connection = open.connection
            if device.newest == connectionID { device.newest = device.open.max { $0.value.since < $1.value.since }?.key }
            if device.open.isEmpty { device.onlineSince = nil }
            let event = PresenceEvent(
                tenantID: connection.tenantID, deviceID: deviceID, kind: .disconnected, time: time, address: connection.address,
                protocolName: connection.protocolName, transport: connection.transport, connectionID: connectionID, reason: reason,
                reasonCode: reasonCode, online: !device.open.isEmpty
            )
            device.lastDisconnect = event
            state.devices[deviceID] = device
            return event
        }
    }

    /// Whether the device has an open connection.
    public func isOnline(_ deviceID: String) -> Bool {
        state.withLock { !($0.devices[deviceID]?.open.isEmpty ?? true) }
    }

    /// Those of `deviceIDs` with an open connection.
    public func onlineDevices(among deviceIDs: [String]) -> Set<String> {
        state.withLock { state in
            Set(deviceIDs.filter { !(state.devices[$0]?.open.isEmpty ?? true) })
        }
    }

    /// The device's presence as far as this server knows: its open connections and, if it
    /// disconnected since the server started, its last disconnect.
    public func snapshot(_ deviceID: String) -> (connections: [PresenceConnection], newest: PresenceConnection?, onlineSince: Date?, lastDisconnect: PresenceEvent?) {
        state.withLock { state in
            guard let device = state.devices[deviceID] else { return ([], nil, nil, nil) }
            return (
                device.open.values.map(\.connection), device.newest.flatMap { device.open[$0]?.connection }, device.onlineSince,
                device.lastDisconnect
            )
        }
    }

    /// Forgets a device (deleted).
    public func forget(_ deviceID: String) {
        _ = state.withLock { $0.devices.removeValue(forKey: deviceID) }
    }
}
