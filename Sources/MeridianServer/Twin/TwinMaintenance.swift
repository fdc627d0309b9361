import Logging
import MeridianCore
import ServiceLifecycle

/// Removes twin history older than `twin.history_retention_days`, once at start and then every
/// `interval` seconds, until graceful shutdown.
struct TwinMaintenance: Service {
    let twins: TwinService
    let interval: Double
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let removed = try await twins.sweepHistory()
                if removed > 0 { logger.info("twin history retention", metadata: ["twin.history_removed": "\(removed)"]) }
            } catch {
                logger.error("twin history retention failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(interval)) }
        }
    }
}
