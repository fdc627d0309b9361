import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MeridianCore
import NIOCore

/// The REST API under `/api/v1`: the route table, its registration on the router, the
/// problem+json answer for anything that goes wrong under `/api`, the OpenAPI document and the
/// browsable docs at `/api/docs`.
enum APIRoutes {
    static let prefix = "/api/v1"
    static let docsPath = "/api/docs"

    /// Every endpoint with the least role it needs: viewers read; operators manage devices,
    /// credentials, certificates and claims; admins manage profiles, users, API keys and the
    /// CA, and read the audit log.
    static let endpoints: [APIEndpoint] = [
        // Authentication
        APIEndpoint(.post, "/auth/login", .anyone, login),
        APIEndpoint(.post, "/auth/refresh", .anyone, refresh),
        APIEndpoint(.get, "/me", .role(.viewer), me),
        // Tenants, users, API keys
        APIEndpoint(.get, "/tenants", .role(.viewer), listTenants),
        APIEndpoint(.post, "/tenants", .user(.viewer), createTenant),
        APIEndpoint(.get, "/users", .role(.viewer), listUsers),
        APIEndpoint(.post, "/users", .role(.admin), addUser),
        APIEndpoint(.patch, "/users/{id}", .role(.admin), setUserRole),
        APIEndpoint(.delete, "/users/{id}", .role(.admin), removeUser),
        APIEndpoint(.get, "/api-keys", .role(.admin), listAPIKeys),
        APIEndpoint(.post, "/api-keys", .role(.admin), createAPIKey),
        APIEndpoint(.delete, "/api-keys/{id}", .role(.admin), revokeAPIKey),
        // Profiles
        APIEndpoint(.get, "/profiles", .role(.viewer), listProfiles),
        APIEndpoint(.post, "/profiles", .role(.admin), createProfile),
        APIEndpoint(.get, "/profiles/{id}", .role(.viewer), getProfile),
        APIEndpoint(.put, "/profiles/{id}", .role(.admin), updateProfile),
        APIEndpoint(.delete, "/profiles/{id}", .role(.admin), deleteProfile),
        // Devices
        APIEndpoint(.get, "/devices", .role(.viewer), listDevices),
        APIEndpoint(.post, "/devices", .role(.operator), createDevice),
        APIEndpoint(.post, "/devices/import", .role(.operator), importDevices),
        APIEndpoint(.get, "/devices/{id}", .role(.viewer), getDevice),
        APIEndpoint(.patch, "/devices/{id}", .role(.operator), updateDevice),
        APIEndpoint(.delete, "/devices/{id}", .role(.operator), deleteDevice),
        APIEndpoint(.post, "/devices/{id}/decommission", .role(.operator), decommissionDevice),
        // Presence
        APIEndpoint(.get, "/devices/{id}/presence", .role(.viewer), getPresence),
        APIEndpoint(.get, "/devices/{id}/presence/events", .role(.viewer), listPresenceEvents),
        // Telemetry
        APIEndpoint(.post, "/devices/{id}/telemetry", .anyone, postTelemetry),
        APIEndpoint(.get, "/devices/{id}/telemetry", .role(.viewer), getTelemetry),
        APIEndpoint(.get, "/devices/{id}/telemetry/latest", .role(.viewer), getLatest),
        APIEndpoint(.get, "/devices/{id}/telemetry/keys", .role(.viewer), getKeys),
        APIEndpoint(.get, "/telemetry", .role(.viewer), getFleetTelemetry),
        APIEndpoint(.get, "/telemetry/latest", .role(.viewer), getFleetLatest),
        APIEndpoint(.get, "/telemetry/retention", .role(.viewer), getTenantRetention),
        APIEndpoint(.put, "/telemetry/retention", .role(.admin), putTenantRetention),
        APIEndpoint(.get, "/profiles/{id}/retention", .role(.viewer), getProfileRetention),
        APIEndpoint(.put, "/profiles/{id}/retention", .role(.admin), putProfileRetention),
        // Twins
        APIEndpoint(.get, "/devices/{id}/twin", .role(.viewer), getTwin),
        APIEndpoint(.patch, "/devices/{id}/twin", .role(.operator), patchTwin),
        APIEndpoint(.delete, "/devices/{id}/twin", .role(.operator), deleteTwin),
        APIEndpoint(.get, "/devices/{id}/twin/history", .role(.viewer), getTwinHistory),
        APIEndpoint(.get, "/devices/{id}/twins", .role(.viewer), listTwins),
        APIEndpoint(.get, "/devices/{id}/twins/{name}", .role(.viewer), getNamedTwin),
        APIEndpoint(.patch, "/devices/{id}/twins/{name}", .role(.operator), patchNamedTwin),
        APIEndpoint(.delete, "/devices/{id}/twins/{name}", .role(.operator), deleteNamedTwin),
        APIEndpoint(.get, "/devices/{id}/twins/{name}/history", .role(.viewer), getNamedTwinHistory),
        // Credentials, certificates, CA
        APIEndpoint(.get, "/devices/{id}/credentials", .role(.viewer), listCredentials),
        APIEndpoint(.post, "/devices/{id}/credentials", .role(.operator), createCredential),
        APIEndpoint(.delete, "/devices/{id}/credentials/{credentialId}", .role(.operator), revokeCredential),
        APIEndpoint(.post, "/devices/{id}/certificates", .role(.operator), issueCertificate),
        APIEndpoint(.get, "/ca", .role(.viewer), listCertificateAuthorities),
        APIEndpoint(.post, "/ca", .role(.admin), registerCertificateAuthority),
        // Claiming and provisioning
        APIEndpoint(.post, "/devices/{id}/claim-code", .role(.operator), setClaimCode),
        APIEndpoint(.post, "/claims", .role(.operator), claimDevice),
        APIEndpoint(.post, "/provision", .anyone, provision),
        // Audit
        APIEndpoint(.get, "/audit", .role(.admin), listAudit),
        APIEndpoint(.get, "/audit/verify", .role(.admin), verifyAudit),
        // This document
        APIEndpoint(.get, "/openapi.json", .anyone, openAPIDocument),
    ] + commandEndpoints + ruleEndpoints + webhookEndpoints

    /// Registers the API on `router`. Routes added to the router before this call keep their
    /// own error answers; under `/api` every error becomes problem+json, unknown routes too.
    static func add(to router: Router<MeridianRequestContext>, services: APIServices) {
        services.followRevocations()
        router.add(middleware: APIProblemMiddleware(logger: services.logger))
        for endpoint in endpoints {
            router.on(RouterPath(endpoint.routerPath), method: endpoint.method) { request, context in
                try await respond(to: request, context: context, endpoint: endpoint, services: services)
            }
        }
        router.get(RouterPath(docsPath)) { _, _ in
            Response(
                status: .ok,
                headers: [
                    .contentType: "text/html; charset=utf-8",
                    .contentSecurityPolicy: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
                ],
                body: .init(byteBuffer: ByteBuffer(string: APIDocsPage.html))
            )
        }
    }

    static func respond(
        to request: Request, context: MeridianRequestContext, endpoint: APIEndpoint, services: APIServices
    ) async throws -> Response {
        var identity: APIIdentity?
        if let minimum = endpoint.access.minimumRole {
            let authenticated = try await services.authenticate(request, remoteAddress: context.remoteAddress?.ipAddress)
            guard authenticated.caller.role.allows(minimum) else {
                throw APIProblem.forbidden(
                    "\(endpoint.method.rawValue) \(prefix)\(endpoint.path) needs the \(minimum.rawValue) role or above; "
                        + "the caller is \(authenticated.caller.role.rawValue)"
                )
            }
            if case .user = endpoint.access, authenticated.caller.actor.kind != .user {
                throw APIProblem.forbidden("only a logged-in user may do this, not an API key")
            }
            identity = authenticated
        }
        do {
            return try await endpoint.handler(
                APIRequest(request: request, context: context, services: services, identity: identity)
            )
        } catch let error as RegistryError {
            throw APIProblem(error)
        }
    }
}

/// Under `/api`, turns every error into problem+json: unknown routes and methods are 404,
/// registry errors map by their code, anything unexpected is a logged 500 that tells the
/// client nothing internal.
struct APIProblemMiddleware: RouterMiddleware {
    typealias Context = MeridianRequestContext
    let logger: Logger

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        guard path == "/api" || path.hasPrefix("/api/") else { return try await next(request, context) }
        do {
            return try await next(request, context)
        } catch let problem as APIProblem {
            throw problem
        } catch let error as RegistryError {
            throw APIProblem(error)
        } catch let error as HTTPError where error.status == .notFound && context.endpointPath == "NotFound" {
            throw APIProblem.unknownRoute(method: request.method, path: path)
        } catch let error as any HTTPResponseError {
            throw APIProblem(
                error.status, type: "http-\(error.status.code)", title: error.status.reasonPhrase,
                detail: "\(request.method.rawValue) \(path): \(error.status.reasonPhrase)"
            )
        } catch {
            logger.error(
                "API request failed",
                metadata: ["http.method": "\(request.method.rawValue)", "http.path": "\(path)", "error": "\(error)"]
            )
            throw APIProblem(
                .internalServerError, type: "internal", title: "Internal error",
                detail: "the server could not complete the request; it was logged"
            )
        }
    }
}
