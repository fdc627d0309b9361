import Foundation
import Hummingbird
import MeridianCore

// Credentials, certificates, certificate authorities, claiming, provisioning, audit.
extension APIRoutes {
    @Sendable static func listCredentials(_ api: APIRequest) async throws -> Response {
        let credentials = try await api.registry.credentials(deviceID: try api.parameter("id"), by: try api.caller)
        return APIJSON.response(ListBody(credentials.map(CredentialBody.init)))
    }

    @Sendable static func createCredential(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        let request = try await api.decode(CreateCredentialBody.self).request()
        return try await issue(api, deviceID: id, request)
    }

    @Sendable static func issueCertificate(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        let buffer = try await APIJSON.body(of: api.request)
        let body =
            buffer.readableBytes == 0
            ? CertificateRequestBody() : try APIJSON.decode(CertificateRequestBody.self, from: Data(buffer.readableBytesView))
        return try await issue(api, deviceID: id, try body.request())
    }

    private static func issue(_ api: APIRequest, deviceID: String, _ request: CredentialRequest) async throws -> Response {
        let issued = try await api.registry.createCredential(deviceID: deviceID, request, by: try api.caller)
        var response = APIJSON.response(IssuedCredentialBody(issued), status: .created)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    @Sendable static func revokeCredential(_ api: APIRequest) async throws -> Response {
        try await api.registry.revokeCredential(
            deviceID: try api.parameter("id"), credentialID: try api.parameter("credentialId"), by: try api.caller
        )
        return APIJSON.noContent()
    }

    @Sendable static func listCertificateAuthorities(_ api: APIRequest) async throws -> Response {
        let authorities = try await api.registry.certificateAuthorities(by: try api.caller)
        return APIJSON.response(ListBody(authorities.map(CertificateAuthorityBody.init)))
    }

    @Sendable static func registerCertificateAuthority(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(RegisterCABody.self)
        let authority = try await api.registry.registerCertificateAuthority(pem: body.certificate, by: try api.caller)
        return APIJSON.response(CertificateAuthorityBody(authority), status: .created)
    }

    /// Longest a claim code may stay valid: 30 days.
    static let maximumClaimDuration = 30 * 24 * 3600

    @Sendable static func setClaimCode(_ api: APIRequest) async throws -> Response {
        let caller = try api.caller
        let id = try api.parameter("id")
        let body = try await api.decode(ClaimCodeBody.self)
        guard (1...maximumClaimDuration).contains(body.durationSeconds) else {
            throw APIProblem.badRequest("durationSeconds must be from 1 to \(maximumClaimDuration)", field: "durationSeconds")
        }
        // The device must be in the caller's tenant (404 otherwise), as for every device route.
        let device = try await api.registry.device(id, by: caller)
        try await api.registry.setClaimCode(
            deviceID: device.id, code: body.code, duration: TimeInterval(body.durationSeconds), actor: caller.actor
        )
        return APIJSON.noContent()
    }

    @Sendable static func claimDevice(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(ClaimBody.self)
        return APIJSON.response(DeviceBody(try await api.registry.claimDevice(deviceID: body.deviceId, code: body.code, by: try api.caller)))
    }

    /// ThingsBoard's HTTP provisioning: no authentication but the profile's key and secret;
    /// the answer is ThingsBoard's (`status` SUCCESS or FAILURE), with a 4xx status on failure.
    @Sendable static func provision(_ api: APIRequest) async throws -> Response {
        do {
            let body = try await api.decode(ProvisionBody.self)
            let credentialsType = body.credentialsType ?? "ACCESS_TOKEN"
            let credential: CredentialRequest
            switch credentialsType {
            case "ACCESS_TOKEN":
                credential = .token(body.token)
            case "MQTT_BASIC":
                guard let username = body.username, !username.isEmpty else {
                    throw APIProblem.badRequest("username is required for MQTT_BASIC", field: "username")
                }
                guard let password = body.password, !password.isEmpty else {
                    throw APIProblem.badRequest("password is required for MQTT_BASIC", field: "password")
                }
                credential = .password(username: username, password: password)
            default:
                throw APIProblem.badRequest("credentialsType must be ACCESS_TOKEN or MQTT_BASIC", field: "credentialsType")
            }
            let (device, issued) = try await api.registry.provision(
                ProvisionRequest(
                    provisionKey: body.provisionDeviceKey, provisionSecret: body.provisionDeviceSecret,
                    deviceName: body.deviceName, credential: credential, remoteAddress: api.remoteAddress
                )
            )
            let value: ProvisionResultBody.Value
            if case .password(let username, let password, _) = credential {
                value = .basic(clientId: body.clientId, userName: username, password: password)
            } else {
                value = .token(issued.token ?? "")
            }
            return APIJSON.response(
                ProvisionResultBody(
                    credentialsType: credentialsType, credentialsValue: value, deviceId: device.id, deviceName: device.name
                )
            )
        } catch let problem as APIProblem {
            return APIJSON.response(ProvisionFailureBody(errorMsg: problem.detail), status: problem.status)
        } catch let error as RegistryError {
            let problem = APIProblem(error)
            return APIJSON.response(ProvisionFailureBody(errorMsg: error.message), status: problem.status)
        }
    }

    @Sendable static func listAudit(_ api: APIRequest) async throws -> Response {
        let limit = try api.integerQuery("limit", in: 1...1000, default: 100) ?? 100
        let before = try api.integerQuery("before", in: Int64(1)...Int64.max, default: nil)
        let page = try await api.registry.auditEntries(by: try api.caller, limit: limit, before: before)
        return APIJSON.response(ListBody(page.items.map(AuditEntryBody.init), nextCursor: page.nextCursor))
    }

    @Sendable static func verifyAudit(_ api: APIRequest) async throws -> Response {
        APIJSON.response(AuditVerificationBody(try await api.registry.verifyAudit()))
    }

    @Sendable static func openAPIDocument(_ api: APIRequest) async throws -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: .init(bytes: OpenAPIDocument.json))
        )
    }
}
