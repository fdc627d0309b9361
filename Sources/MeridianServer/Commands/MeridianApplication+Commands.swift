import Foundation
import Logging
import MeridianCore
import MeridianStorage
import ServiceLifecycle

extension MeridianApplication {
    /// The command service: its store in `meridian.sqlite` (the registry's file) or in
    /// PostgreSQL when `database` is given, its limits from `commands.*`.
    func openCommands(database: PostgresDatabase?) async throws -> CommandService {
        let store: any CommandStore
        if let database {
            do {
                store = try await PostgresCommandStore(database: database)
            } catch let error as PostgresCommandStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
        } else {
            let path = (configuration.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
            do {
                store = try SQLiteCommandStore(path: path)
            } catch let error as SQLiteCommandStore.OpenError {
                throw MeridianStartupError(error.description)
            }
        }
        let commands = configuration.commands
        var settings = CommandService.Settings()
        settings.defaultTimeoutMs = min(commands.defaultTimeoutMs, commands.maximumTimeoutMs)
        settings.maximumTimeoutMs = commands.maximumTimeoutMs
        settings.maximumExpiryMs = commands.maximumExpiryMs
        return CommandService(
            store: store, settings: settings,
            limiter: CommandRateLimiter(perDevice: commands.ratePerDevice, perTenant: commands.ratePerTenant),
            logger: Self.commandLog(logger)
        )
    }

    /// The command service's log lines, written to `logger`.
    static func commandLog(_ logger: Logger) -> CommandLog {
        { level, message, metadata in
            let swiftLogLevel: Logger.Level =
                switch level {
                case .debug: .debug
                case .info: .info
                case .warning: .warning
                case .error: .error
                }
            logger.log(level: swiftLogLevel, "\(message)", metadata: metadata.mapValues { .string($0) })
        }
    }
}

/// Expires queued commands and times out unanswered ones, every `interval` seconds until
/// shutdown (waiting API requests time their own commands out at once; this catches the rest,
/// e.g. after a restart).
struct CommandSweeper: Service {
    let service: CommandService
    var interval: Duration = .milliseconds(500)

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await service.sweep()
            try? await Task.sleep(for: interval)
        }
    }
}
