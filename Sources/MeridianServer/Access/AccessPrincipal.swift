import Foundation
import MQTTBroker
import MeridianCore

/// The registry operations the broker integration uses. ``Registry`` provides them; tests use
/// an in-memory stand-in.
protocol AccessRegistry: Sendable {
    func observe(_ observer: @escaping @Sendable (RegistryChange) -> Void)
    func authenticateDevice(token: String) async throws -> DeviceIdentity?
    func authenticateDevice(username: String, password: String) async throws -> DeviceIdentity?
    func authenticateDevice(
        certificateFingerprint: String, commonName: String?, issuerFingerprint: String?, mapping: CertificateMapping
    ) async throws -> DeviceIdentity?
    func authenticateAPIKey(_ secret: String) async throws -> APIKey?
    func login(username: String, password: String, remoteAddress: String?) async throws -> LoginResult
    func provision(_ request: ProvisionRequest) async throws -> (device: Device, credential: IssuedCredential)
    func setClaimCode(deviceID: String, code: String, duration: TimeInterval, actor: AuditActor) async throws
    func allCertificateAuthorityPEMs() async throws -> [String]
    func markSeen(deviceIDs: [String], at time: Date) async throws
}

extension Registry: AccessRegistry {}

/// Who an MQTT connection is, as the registry integration records it in
/// ``MQTTPrincipal/attributes`` (which the broker also stores with persistent sessions, so
/// never secrets), and the topic mapping that goes with it.
///
/// Internally a tenant's device topics are `$tenants/{tenant}/devices/{device}/...`: topics
/// starting with `$` are never matched by a `#` or `+` in the first level, so clients without a
/// mapping never see them.
enum AccessPrincipal {
    enum Kind: String {
        case device
        case user
        case apiKey = "api-key"
        case provisioning = "provision"
        case anonymous
    }

    static let kindKey = "access.kind"
    static let tenantKey = "tenant.id"
    static let deviceKey = "device.id"
    static let credentialKey = "credential.id"
    static let apiKeyKey = "api_key.id"
    static let userKey = "user.id"
    static let roleKey = "access.role"
    /// The topic subtree the principal may publish to (absent: nothing).
    static let publishKey = "access.publish"
    /// The topic subtree the principal may subscribe to (absent: nothing).
    static let subscribeKey = "access.subscribe"

    /// The user name a client sends to provision itself (as with ThingsBoard).
    static let provisioningUsername = "provision"
    static let provisionRequestTopic = "/provision/request"
    static let provisionResponseTopic = "/provision/response"

    /// The internal subtree of a device's topics.
    static func deviceTopics(tenantID: String, deviceID: String) -> String {
        "$tenants/\(tenantID)/devices/\(deviceID)"
    }

    /// The internal subtree of a tenant's device topics.
    static func tenantDeviceTopics(tenantID: String) -> String {
        "$tenants/\(tenantID)/devices"
    }

    /// A device: `devices/{id}/...` and ThingsBoard's `v1/devices/me/...` are both its subtree.
    static func device(_ identity: DeviceIdentity, clientIdentifier: String, username: String?) -> MQTTPrincipal {
        let inside = deviceTopics(tenantID: identity.tenantID, deviceID: identity.deviceID)
        return MQTTPrincipal(
            clientIdentifier: clientIdentifier,
            username: username,
            attributes: [
                kindKey: Kind.device.rawValue,
                tenantKey: identity.tenantID,
                deviceKey: identity.deviceID,
                credentialKey: identity.credentialID,
                publishKey: inside,
                subscribeKey: inside,
                MQTTPrincipal.sessionOwnerAttribute: "device:\(identity.tenantID)/\(identity.deviceID)",
            ],
            topicMapping: MQTTTopicMapping(
                [
                    MQTTTopicRewrite(external: "devices/\(identity.deviceID)", internal: inside),
                    MQTTTopicRewrite(external: "v1/devices/me", internal: inside),
                ] + awsRewrites(identity, inside: inside)
            )
        )
    }

    /// AWS IoT shadow topics: `$aws/things/{device id}` and `$aws/things/{device name}` are
    /// the device's `{subtree}/$aws` (its shadows are `{subtree}/$aws/shadow/...`); other
    /// things' topics stay unmapped, outside the device's subtree, so it cannot reach them.
    static func awsRewrites(_ identity: DeviceIdentity, inside: String) -> [MQTTTopicRewrite] {
        let internalAWS = inside + "/" + awsLevel
        var rewrites = [MQTTTopicRewrite(external: "$aws/things/\(identity.deviceID)", internal: internalAWS)]
        if let name = identity.deviceName, name != identity.deviceID, !name.isEmpty,
            !name.unicodeScalars.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" || $0.value == 0 })
        {
            rewrites.append(MQTTTopicRewrite(external: "$aws/things/\(name)", internal: internalAWS))
        }
        return rewrites
    }

    /// The level under a device's subtree that stands for `$aws/things/{thing}`.
    static let awsLevel = "$aws"

    /// A user or API key of a tenant: `devices/...` is the tenant's device topics; every role
    /// may subscribe, operators and above may also publish (commands to devices).
    static func member(
        kind: Kind, tenantID: String, role: Role, id: String, clientIdentifier: String, username: String?
    ) -> MQTTPrincipal {
        let inside = tenantDeviceTopics(tenantID: tenantID)
        var attributes = [
            kindKey: kind.rawValue,
            tenantKey: tenantID,
            roleKey: role.rawValue,
            subscribeKey: inside,
        ]
        attributes[kind == .apiKey ? apiKeyKey : userKey] = id
        attributes[MQTTPrincipal.sessionOwnerAttribute] = "\(kind.rawValue):\(tenantID)/\(id)"
        if role.allows(.operator) { attributes[publishKey] = inside }
        return MQTTPrincipal(
            clientIdentifier: clientIdentifier,
            username: username,
            attributes: attributes,
            topicMapping: MQTTTopicMapping([MQTTTopicRewrite(external: "devices", internal: inside)])
        )
    }

    /// A client asking to be provisioned: it may only publish `/provision/request` and
    /// subscribe to `/provision/response`, which are private to the connection.
    static func provisioning(clientIdentifier: String, connectionKey: String) -> MQTTPrincipal {
        let request = "$provision/\(connectionKey)/request"
        let response = "$provision/\(connectionKey)/response"
        return MQTTPrincipal(
            clientIdentifier: clientIdentifier,
            username: provisioningUsername,
            attributes: [
                kindKey: Kind.provisioning.rawValue, publishKey: request, subscribeKey: response,
                MQTTPrincipal.sessionOwnerAttribute: "provisioning:\(connectionKey)",
            ],
            topicMapping: MQTTTopicMapping([
                MQTTTopicRewrite(external: provisionRequestTopic, internal: request),
                MQTTTopicRewrite(external: provisionResponseTopic, internal: response),
            ])
        )
    }

    /// One dictionary shared by every anonymous principal (copy-on-write: no allocation per
    /// connection, which matters with tens of thousands of idle clients).
    private static let anonymousAttributes = [kindKey: Kind.anonymous.rawValue]

    /// A client without credentials, when `auth.allow_anonymous` is on.
    static func anonymous(clientIdentifier: String) -> MQTTPrincipal {
        MQTTPrincipal(clientIdentifier: clientIdentifier, attributes: anonymousAttributes)
    }

    static func kind(of principal: MQTTPrincipal) -> Kind? {
        principal.attributes[kindKey].flatMap(Kind.init(rawValue:))
    }
}
