import Logging
import MeridianCore
import ServiceLifecycle

/// Removes twin history older than `twin.history_retention_days`, once at start and then every
/// `interval` seconds, until graceful shutdown.
struct TwinMaintenance: Service {
    let twins: TwinService
    let interval: Double
    let logger: Logger

    /// Forgets the twins of devices the registry deleted or saw claimed into another tenant.
    static func followRegistry(_ registry: Registry, twins: TwinService, logger: Logger) {
        registry.observe { change in
            guard case .deviceRevoked(let deviceID, let reason) = change,
                reason == "deleted" || reason == "claimed by another tenant"
            else { return }
            Task {
                do {
                    try await twins.deviceRemoved(deviceID: deviceID)
                } catch {
                    logger.error(
                        "could not remove a device's twins",
                        metadata: ["device.id": "\(deviceID)", "error": "\(error)"]
                    )
                }
            }
        }
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let removed = try await twins.sweepHistory()
                if removed > 0 {
                    logger.info("twin history retention", metadata: ["twin.history_removed": "\(removed)"])
                }
            } catch {
                logger.error("twin history retention failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(interval)) }
        }
    }
}
