import Foundation
import Hummingbird
import MeridianCore

// Login, tokens, tenants, users and API keys.
extension APIRoutes {
    @Sendable static func login(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(LoginRequestBody.self)
        let limiter = api.services.loginLimiter
        let address = api.remoteAddress
        if let wait = limiter.retryAfter(username: body.username, address: address) {
            throw APIProblem.tooManyRequests("too many failed logins; try again later", retryAfter: wait)
        }
        let result: LoginResult
        do {
            result = try await api.registry.login(username: body.username, password: body.password, remoteAddress: address)
        } catch let error as RegistryError where error.code == .unauthenticated {
            limiter.recordFailure(username: body.username, address: address)
            throw APIProblem.unauthenticated("wrong user name or password", tokenGiven: false)
        }
        limiter.recordSuccess(username: body.username)
        var tenants: [(Tenant, Role)] = []
        for membership in result.memberships {
            tenants.append((try await api.registry.tenant(membership.tenantID), membership.role))
        }
        let chosen: (Tenant, Role)?
        if let wanted = body.tenant {
            chosen = tenants.first { $0.0.id == wanted } ?? tenants.first { $0.0.name == wanted }
            guard chosen != nil else {
                throw APIProblem(
                    .forbidden, type: "forbidden", title: "Not allowed",
                    detail: "the user is not a member of tenant \(wanted)", field: "tenant"
                )
            }
        } else {
            chosen = tenants.first
        }
        guard let (tenant, role) = chosen else {
            throw APIProblem.forbidden("the user belongs to no tenant")
        }
        return try await tokenPair(
            api, user: result.user, tenantID: tenant.id, role: role,
            tenants: tenants.map { TenantBody($0.0, role: $0.1) }
        )
    }

    @Sendable static func refresh(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(RefreshRequestBody.self)
        let refreshed: (user: User, membership: Membership, refreshToken: String)
        do {
            refreshed = try await api.registry.refresh(token: body.refreshToken, lifetime: api.services.refreshTokenLifetime)
        } catch let error as RegistryError where error.code == .unauthenticated {
            throw APIProblem.unauthenticated("the refresh token is unknown, expired or revoked: log in again", tokenGiven: false)
        }
        let tenants = try await api.registry.tenants(of: refreshed.user.id).map { tenant in
            TenantBody(tenant, role: tenant.id == refreshed.membership.tenantID ? refreshed.membership.role : nil)
        }
        return try await tokenPair(
            api, user: refreshed.user, tenantID: refreshed.membership.tenantID, role: refreshed.membership.role,
            tenants: tenants, refreshToken: refreshed.refreshToken
        )
    }

    private static func tokenPair(
        _ api: APIRequest, user: User, tenantID: String, role: Role, tenants: [TenantBody], refreshToken: String? = nil
    ) async throws -> Response {
        let signer = api.services.signer
        let accessToken = try await signer.sign(userID: user.id, username: user.username, tenantID: tenantID, role: role)
        let refresh: String
        if let refreshToken {
            refresh = refreshToken
        } else {
            refresh = try await api.registry.issueRefreshToken(
                userID: user.id, tenantID: tenantID, lifetime: api.services.refreshTokenLifetime
            )
        }
        let body = TokenPairBody(
            accessToken: accessToken, expiresIn: Int(signer.lifetime), refreshToken: refresh,
            tenant: tenantID, role: role, tenants: tenants
        )
        var response = APIJSON.response(body)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    @Sendable static func me(_ api: APIRequest) async throws -> Response {
        let caller = try api.caller
        return APIJSON.response(
            MeBody(kind: caller.actor.kind, id: caller.actor.id, username: api.identity?.username, tenant: caller.tenantID, role: caller.role)
        )
    }

    @Sendable static func listTenants(_ api: APIRequest) async throws -> Response {
        let caller = try api.caller
        let tenants: [TenantBody]
        if caller.actor.kind == .user {
            tenants = try await api.registry.tenants(of: caller.actor.id).map {
                TenantBody($0, role: $0.id == caller.tenantID ? caller.role : nil)
            }
        } else {
            tenants = [TenantBody(try await api.registry.tenant(caller.tenantID), role: caller.role)]
        }
        return APIJSON.response(ListBody(tenants))
    }

    @Sendable static func createTenant(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(CreateTenantBody.self)
        let tenant = try await api.registry.createTenant(name: body.name, by: try api.caller)
        return APIJSON.response(TenantBody(tenant, role: .owner), status: .created)
    }

    @Sendable static func listUsers(_ api: APIRequest) async throws -> Response {
        APIJSON.response(ListBody(try await api.registry.users(by: try api.caller).map(UserBody.init)))
    }

    @Sendable static func addUser(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(CreateUserBody.self)
        let user = try await api.registry.addUser(username: body.username, password: body.password, role: body.role, by: try api.caller)
        return APIJSON.response(UserBody(user), status: .created)
    }

    @Sendable static func setUserRole(_ api: APIRequest) async throws -> Response {
        let id = try api.parameter("id")
        let body = try await api.decode(SetRoleBody.self)
        return APIJSON.response(UserBody(try await api.registry.setRole(userID: id, role: body.role, by: try api.caller)))
    }

    @Sendable static func removeUser(_ api: APIRequest) async throws -> Response {
        try await api.registry.removeUser(userID: try api.parameter("id"), by: try api.caller)
        return APIJSON.noContent()
    }

    @Sendable static func listAPIKeys(_ api: APIRequest) async throws -> Response {
        APIJSON.response(ListBody(try await api.registry.apiKeys(by: try api.caller).map { APIKeyBody($0) }))
    }

    @Sendable static func createAPIKey(_ api: APIRequest) async throws -> Response {
        let body = try await api.decode(CreateAPIKeyBody.self)
        let (key, secret) = try await api.registry.createAPIKey(name: body.name, role: body.role, expiresAt: body.expiresAt, by: try api.caller)
        var response = APIJSON.response(APIKeyBody(key, secret: secret), status: .created)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    @Sendable static func revokeAPIKey(_ api: APIRequest) async throws -> Response {
        try await api.registry.revokeAPIKey(id: try api.parameter("id"), by: try api.caller)
        return APIJSON.noContent()
    }
}
