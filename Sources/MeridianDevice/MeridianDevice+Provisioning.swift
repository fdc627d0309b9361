import Foundation
import MQTTClient
import MQTTCore
import MeridianCore
import NIOCore
import NIOPosix

extension MeridianDevice {
    /// What a device needs to register itself with a profile's provisioning key and secret.
    public struct ProvisioningRequest: Sendable {
        /// The server (credentials are ignored: provisioning connects as user `provision`).
        public var host: String
        /// The MQTT port; `nil` is 1883, or 8883 with `tls`.
        public var port: Int?
        public var tls: TLS?
        /// The profile's provisioning key and secret.
        public var profileKey: String
        public var profileSecret: String
        /// The device's name: new with `allow-create`, already registered with `pre-registered-only`.
        public var deviceName: String
        public var timeout: Duration = .seconds(15)

        public init(host: String, port: Int? = nil, tls: TLS? = nil, profileKey: String, profileSecret: String, deviceName: String) {
            self.host = host
            self.port = port
            self.tls = tls
            self.profileKey = profileKey
            self.profileSecret = profileSecret
            self.deviceName = deviceName
        }
    }

    /// Registers a device with a profile's provisioning key and secret (ThingsBoard's device
    /// provisioning, over MQTT) and returns its access token, for
    /// ``Credentials/accessToken(_:)``. Keep the token: provisioning the same name again is
    /// refused once the device exists (unless the profile allows re-provisioning).
    ///
    /// - Throws: ``MeridianDeviceError/provisioningFailed(_:)`` with the server's message (a wrong
    ///   key or secret, an unknown name), ``MeridianDeviceError/timedOut(_:)``, or the connection's error.
    public static func provision(
        _ request: ProvisioningRequest,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> String {
        var configuration = Configuration(host: request.host, port: request.port, credentials: .accessToken("provision"))
        configuration.tls = request.tls
        configuration.clientIdentifier = "provision-\(UUID().uuidString.prefix(12))"
        var clientConfiguration = try configuration.clientConfiguration()
        clientConfiguration.cleanStart = true
        clientConfiguration.reconnect = .disabled
        clientConfiguration.connectProperties = MQTTProperties()
        let client = MQTTClient(configuration: clientConfiguration, eventLoopGroup: eventLoopGroup)
        do {
            try await client.connect()
        } catch let error as MQTTClientError where error.code == .connectionRefused {
            throw MeridianDeviceError.refused(error.reasonCode ?? .unspecifiedError, error.reasonString ?? error.message)
        }
        defer { Task { try? await client.disconnect() } }
        try await client.subscribe("/provision/response", qos: .atLeastOnce)
        let body: JSONValue = [
            "provisionDeviceKey": .string(request.profileKey),
            "provisionDeviceSecret": .string(request.profileSecret),
            "deviceName": .string(request.deviceName),
        ]
        let messages = client.messages
        let answer = try await withThrowingTaskGroup(of: JSONValue?.self) { group in
            group.addTask {
                for await message in messages where message.topic == "/provision/response" {
                    return JSONValue.parse(Data(message.payload.readableBytesView)) ?? .null
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: request.timeout)
                return nil
            }
            try await client.publish("/provision/request", payload: body.jsonText, qos: .atLeastOnce)
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let answer else { throw MeridianDeviceError.timedOut("provisioning") }
        guard answer["status"]?.stringValue == "SUCCESS", let token = answer["credentialsValue"]?.stringValue else {
            throw MeridianDeviceError.provisioningFailed(answer["errorMsg"]?.stringValue ?? answer.jsonText)
        }
        return token
    }
}
