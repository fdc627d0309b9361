import MQTTBroker
import MQTTCore
import MeridianCore

/// The broker's connection events, as presence: every connection of a device (one whose
/// principal names a device) is reported to the ``PresenceService``; others (API keys,
/// anonymous clients) are ignored. Runs on the connections' event loops and never waits.
struct PresenceObserver: MQTTConnectionObserver {
    let presence: PresenceService

    func connected(_ connection: MQTTConnectionInfo) {
        guard let device = Self.device(of: connection) else { return }
        presence.connected(
            PresenceConnection(
                connectionID: connection.connectionID, tenantID: device.tenantID, deviceID: device.deviceID,
                address: connection.remoteAddress, protocolName: Self.protocolName(connection.protocolVersion),
                transport: connection.transport.rawValue, keepAlive: Int(connection.keepAlive)
            )
        )
    }

    func disconnected(_ connection: MQTTConnectionInfo, _ disconnection: MQTTDisconnection) {
        guard let device = Self.device(of: connection) else { return }
        presence.disconnected(
            deviceID: device.deviceID, connectionID: connection.connectionID, reason: Self.reason(disconnection),
            reasonCode: disconnection.reasonCode?.rawValue
        )
    }

    static func device(of connection: MQTTConnectionInfo) -> (deviceID: String, tenantID: String)? {
        let attributes = connection.principal.attributes
        guard let deviceID = attributes[AccessPrincipal.deviceKey], let tenantID = attributes[AccessPrincipal.tenantKey] else { return nil }
        return (deviceID, tenantID)
    }

    static func protocolName(_ version: MQTTProtocolVersion) -> String {
        switch version {
        case .v3_1: "mqtt-3.1"
        case .v3_1_1: "mqtt-3.1.1"
        case .v5: "mqtt-5.0"
        }
    }

    /// The broker's reason as presence's: a platform disconnect (credential or device revoked:
    /// 0x87 not authorized, 0x98 administrative action) is `revoked`; a broken connection or a
    /// protocol violation is `error`.
    static func reason(_ disconnection: MQTTDisconnection) -> PresenceReason {
        switch disconnection.reason {
        case .clean: .clean
        case .keepAliveTimeout: .keepaliveTimeout
        case .takenOver: .takeover
        case .administrative: .revoked
        case .serverShutdown: .shutdown
        case .protocolError, .connectionLost: .error
        }
    }
}
