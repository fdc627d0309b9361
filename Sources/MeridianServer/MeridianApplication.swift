import Logging

/// The Meridian server: everything `meridian serve` runs.
///
/// Placeholder until the broker and HTTP wiring land: `run()` only logs that nothing is wired yet.
public struct MeridianApplication: Sendable {
    /// The configuration the server runs with.
    public let configuration: MeridianConfiguration
    /// The logger handed to every part of the server.
    public let logger: Logger

    /// A server for `configuration`, logging to `logger`.
    public init(configuration: MeridianConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs the server until it is shut down. For now: logs "not yet wired" and returns.
    public func run() async throws {
        logger.info(
            "not yet wired",
            metadata: [
                "network.bind": "\(configuration.network.bind)",
                "network.mqtt_port": "\(configuration.network.mqttPort)",
                "network.http_port": "\(configuration.network.httpPort)",
                "data_dir": "\(configuration.dataDirectory)",
            ]
        )
    }
}
