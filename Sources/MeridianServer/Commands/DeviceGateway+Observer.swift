import MQTTBroker

/// The gateway follows the broker's device connections (other principals are ignored).
extension DeviceGateway: MQTTConnectionObserver {
    /// The device behind a connection, or nil for users, API keys and anonymous clients.
    static func connection(_ info: MQTTConnectionInfo) -> Connection? {
        guard AccessPrincipal.kind(of: info.principal) == .device,
            let tenantID = info.principal.attributes[AccessPrincipal.tenantKey],
            let deviceID = info.principal.attributes[AccessPrincipal.deviceKey]
        else { return nil }
        return Connection(connectionID: info.connectionID, tenantID: tenantID, deviceID: deviceID, protocolVersion: info.protocolVersion)
    }

    func connected(_ connection: MQTTConnectionInfo) {
        if let device = Self.connection(connection) { connected(device) }
    }

    func subscribed(_ connection: MQTTConnectionInfo, filters: [String]) {
        if let device = Self.connection(connection) { subscribed(device, filters: filters) }
    }

    func disconnected(_ connection: MQTTConnectionInfo, _ disconnection: MQTTDisconnection) {
        if let device = Self.connection(connection) { disconnected(device) }
    }

    func delivered(_ connection: MQTTConnectionInfo, tag: UInt64) {
        delivered(tag: tag)
    }
}
