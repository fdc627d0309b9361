import Logging
import MeridianCore

/// The platform services a running server shares between its parts (the REST API, the
/// broker's authenticator and authorizer): the registry, and the logger.
public struct Platform: Sendable {
    /// Tenants, devices, credentials, API keys and the audit log.
    public let registry: Registry
    public let logger: Logger

    public init(registry: Registry, logger: Logger) {
        self.registry = registry
        self.logger = logger
    }
}
