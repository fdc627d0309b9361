import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MeridianCore

/// Who may call an endpoint of the REST API.
enum APIAccess: Sendable, Equatable {
    /// No authentication (login, refresh, device provisioning, the OpenAPI document).
    case anyone
    /// An API key or logged-in user of the tenant with at least this role.
    case role(Role)
    /// A logged-in user (not an API key) with at least this role.
    case user(Role)

    /// The least role, when one is needed.
    var minimumRole: Role? {
        switch self {
        case .anyone: nil
        case .role(let role), .user(let role): role
        }
    }
}

/// One endpoint of the REST API: the route table's row. Every API route is registered from
/// ``APIRoutes/endpoints`` and nowhere else, which is what the OpenAPI document is checked
/// against.
struct APIEndpoint: Sendable {
    let method: HTTPRequest.Method
    /// Relative to `/api/v1`, in OpenAPI form: `/devices/{id}`.
    let path: String
    let access: APIAccess
    let handler: @Sendable (APIRequest) async throws -> Response

    init(_ method: HTTPRequest.Method, _ path: String, _ access: APIAccess, _ handler: @escaping @Sendable (APIRequest) async throws -> Response) {
        self.method = method
        self.path = path
        self.access = access
        self.handler = handler
    }

    /// The path as Hummingbird's router spells it: `/api/v1/devices/:id`.
    var routerPath: String {
        APIRoutes.prefix
            + path.split(separator: "/", omittingEmptySubsequences: false).map { component in
                component.hasPrefix("{") && component.hasSuffix("}") ? ":" + component.dropFirst().dropLast() : component
            }.joined(separator: "/")
    }
}

/// The identity behind a request: the ``Caller`` the registry needs, and the user name for
/// logged-in users.
struct APIIdentity: Sendable {
    var caller: Caller
    var username: String?
    /// When the credential stops working on its own: an access token's expiry, an API key's
    /// `expiresAt` (nil: never).
    var expiresAt: Date?
}

/// What a handler gets: the request, its context, the services, and (for authenticated
/// endpoints) who is calling.
struct APIRequest: Sendable {
    let request: Request
    let context: MeridianRequestContext
    let services: APIServices
    let identity: APIIdentity?

    var registry: Registry { services.registry }

    /// The caller (authenticated endpoints only).
    var caller: Caller {
        get throws {
            guard let identity else { throw APIProblem.unauthenticated("authentication required", tokenGiven: false) }
            return identity.caller
        }
    }

    /// The client's IP address.
    var remoteAddress: String? { context.remoteAddress?.ipAddress }

    /// A path parameter (`{id}`).
    func parameter(_ name: String) throws -> String {
        guard let raw = context.parameters.get(name), !raw.isEmpty else {
            throw APIProblem.badRequest("the path lacks \(name)", field: name)
        }
        return raw.removingPercentEncoding ?? raw
    }

    /// The last value of query parameter `name`.
    func query(_ name: String) -> String? {
        request.uri.queryParameters[values: Substring(name)].last.map(String.init)
    }

    /// Every value of query parameter `name`.
    func queryAll(_ name: String) -> [String] {
        request.uri.queryParameters[values: Substring(name)].map(String.init)
    }

    /// An integer query parameter within `range`; `default` when absent.
    func integerQuery<T: FixedWidthInteger>(_ name: String, in range: ClosedRange<T>, default value: T?) throws -> T? {
        guard let text = query(name) else { return value }
        guard let number = T(text), range.contains(number) else {
            throw APIProblem.badRequest("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)", field: name)
        }
        return number
    }

    func decode<T: Decodable>(_ type: T.Type) async throws -> T {
        try await APIJSON.decode(type, from: request)
    }
}

/// Everything the API's handlers use, created once by the application.
public final class APIServices: Sendable {
    public let registry: Registry
    public let signer: APITokenSigner
    public let loginLimiter: LoginRateLimiter
    /// Lifetime of refresh tokens.
    public let refreshTokenLifetime: TimeInterval
    /// Telemetry ingest and queries (nil: the telemetry endpoints answer 503).
    public let telemetry: TelemetryService?
    /// Devices' presence (nil: the presence endpoints answer 503, `online` is false).
    public let presence: PresenceService?
    /// Fleet queries (`GET /devices?q=...`).
    public let fleet: FleetQueryService
    /// Device twins (nil: the twin endpoints answer 503).
    public let twins: TwinService?
    /// Commands to devices (nil: the command endpoints answer 503).
    public let commands: CommandService?
    /// Rules, alarms and firings (nil: their endpoints answer 503).
    public let rules: RuleServices?
    /// Webhook delivery and dead letters (nil: the webhook endpoints answer 503).
    public let webhooks: WebhookDispatcher?
    let deviceTokens = DeviceTokenCache()
    let logger: Logger

    /// Fleet queries read `reported.*` and `desired.*` from `fleetTwins`, by default from `twins`.
    public init(
        registry: Registry, signer: APITokenSigner, loginLimiter: LoginRateLimiter = LoginRateLimiter(),
        refreshTokenLifetime: TimeInterval = 30 * 24 * 3600, telemetry: TelemetryService? = nil,
        presence: PresenceService? = nil, twins: TwinService? = nil, fleetTwins: (any FleetTwinSource)? = nil,
        commands: CommandService? = nil, rules: RuleServices? = nil, webhooks: WebhookDispatcher? = nil, logger: Logger
    ) {
        self.rules = rules
        self.webhooks = webhooks
        self.telemetry = telemetry
        self.presence = presence
        self.twins = twins
        self.commands = commands
        self.fleet = FleetQueryService(
            registry: registry, presence: presence, twins: fleetTwins ?? twins.map { TwinFleetSource(twins: $0) }, telemetry: telemetry
        )
        self.registry = registry
        self.signer = signer
        self.loginLimiter = loginLimiter
        self.refreshTokenLifetime = refreshTokenLifetime
        self.logger = logger
    }

    /// The identity behind `Authorization: Bearer <token>`: an API key (its tenant and role)
    /// or an access token from login (its user, tenant and role). 401 without one, or with
    /// one that is unknown, expired or revoked.
    func authenticate(_ request: Request, remoteAddress: String?) async throws -> APIIdentity {
        let token = try Self.bearerToken(request.headers[values: .authorization])
        return try await authenticate(token: token, remoteAddress: remoteAddress)
    }

    /// The token of the `Authorization` header values `headers` (`Bearer <token>`); 401
    /// problems for none, several, another scheme, or an empty or oversized token.
    static func bearerToken(_ headers: [String]) throws -> String {
        guard let header = headers.first else {
            throw APIProblem.unauthenticated("send Authorization: Bearer <API key or access token>", tokenGiven: false)
        }
        guard headers.count == 1 else {
            throw APIProblem.unauthenticated("send one Authorization header", tokenGiven: true)
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIProblem.unauthenticated("the Authorization header must be: Bearer <API key or access token>", tokenGiven: true)
        }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    /// The identity behind an API key or access token (however it was sent: a header, or
    /// for the live stream also a query parameter or a message). 401 problems for a token
    /// that is empty, too long, unknown, expired or revoked.
    func authenticate(token: String, remoteAddress: String?) async throws -> APIIdentity {
        guard !token.isEmpty, token.utf8.count <= 4096 else {
            throw APIProblem.unauthenticated("the bearer token is empty or too long", tokenGiven: true)
        }
        if APITokenSigner.looksLikeJWT(token) {
            guard let claims = await signer.verify(token) else {
                throw APIProblem.unauthenticated("the access token is invalid or expired: log in again or refresh it", tokenGiven: true)
            }
            let actor = AuditActor(kind: .user, id: claims.userID, remoteAddress: remoteAddress)
            return APIIdentity(
                caller: Caller(tenantID: claims.tenant, role: claims.role, actor: actor), username: claims.username,
                expiresAt: claims.expiresAt
            )
        }
        guard let key = try await registry.authenticateAPIKey(token) else {
            throw APIProblem.unauthenticated("the API key is unknown, expired or revoked", tokenGiven: true)
        }
        let actor = AuditActor(kind: .apiKey, id: key.id, remoteAddress: remoteAddress)
        return APIIdentity(caller: Caller(tenantID: key.tenantID, role: key.role, actor: actor), username: nil, expiresAt: key.expiresAt)
    }
}
