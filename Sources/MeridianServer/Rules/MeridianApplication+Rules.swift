import Foundation
import Logging
import MeridianCore
import MeridianStorage
import Synchronization

extension MeridianApplication {
    /// The rule stores: in the registry's database (`meridian.sqlite` or PostgreSQL).
    func openRuleStores(database: PostgresDatabase?) async throws -> (rules: any RuleStore, alarms: any AlarmStore, firings: any RuleFiringStore) {
        if let database {
            do {
                return (
                    try await PostgresRuleStore(database: database), try await PostgresAlarmStore(database: database),
                    try await PostgresRuleFiringStore(database: database)
                )
            } catch let error as PostgresRuleStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            } catch let error as PostgresAlarmStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            } catch let error as PostgresRuleFiringStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
        }
        let path = (configuration.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
        do {
            return (try SQLiteRuleStore(path: path), try SQLiteAlarmStore(path: path), try SQLiteRuleFiringStore(path: path))
        } catch let error as SQLiteRuleStore.OpenError {
            throw MeridianStartupError(error.description)
        } catch let error as SQLiteAlarmStore.OpenError {
            throw MeridianStartupError(error.description)
        } catch let error as SQLiteRuleFiringStore.OpenError {
            throw MeridianStartupError(error.description)
        }
    }

    /// Rules, alarms and the engine that runs them on the pipeline, with their actions.
    func openRules(
        database: PostgresDatabase?, platform: Platform, telemetry: TelemetryService, presence: PresenceService?, twins: TwinService?,
        commands: CommandService?, broker: BrokerReference, webhooks: WebhookDispatcher?
    ) async throws -> RuleServices {
        let stores = try await openRuleStores(database: database)
        let logger = self.logger
        let alarms = try await AlarmService(store: stores.alarms, onWriteError: { change, error in
            logger.error("an alarm change could not be stored", metadata: ["alarm.id": "\(change.alarm.id)", "error": "\(error)"])
        })
        let rules = RuleService(store: stores.rules, maximumRules: configuration.rules.maximumPerTenant)
        var settings = RuleEngine.Settings()
        settings.firingRetention = .seconds(configuration.rules.firingRetentionDays * 86_400)
        let engine = RuleEngine(
            rules: rules, alarms: alarms, firings: stores.firings, registry: platform.registry, twins: twins, presence: presence,
            settings: settings, logger: logger
        )
        // Live deliveries: which action of its firing each webhook is.
        let deliveries = WebhookDeliveries()
        webhooks?.setOutcomeHandler { [engine] request, outcome in
            engine.webhookOutcome(request, outcome, index: deliveries.take(request.deliveryID))
        }
        var send: RuleActionRunner.WebhookSend?
        if let dispatcher = webhooks {
            send = { url, body, secret, timeoutMs, maxAttempts, firing, index in
                let request = WebhookRequest(
                    url: url, body: body, secret: secret, timeoutMs: timeoutMs, maxAttempts: maxAttempts, tenantID: firing.tenantID,
                    ruleID: firing.ruleID, deviceID: firing.deviceID, firingID: firing.id
                )
                deliveries.put(request.deliveryID, index)
                guard dispatcher.enqueue(request) else {
                    _ = deliveries.take(request.deliveryID)
                    return nil
                }
                return request.deliveryID
            }
        }
        let runner = RuleActionRunner(
            targets: .init(broker: broker, commands: commands, twins: twins, pipeline: telemetry.pipeline, webhook: send),
            capacity: configuration.rules.actionQueue,
            record: { [engine] outcome, firingID in engine.record(outcome, firingID: firingID) },
            logger: logger
        )
        engine.attach(runner)
        engine.follow(telemetry.pipeline)
        return RuleServices(
            rules: rules, alarms: alarms, engine: engine,
            dryRun: RuleDryRun(registry: platform.registry, telemetry: telemetry, presence: presence, twins: twins)
        )
    }
}

/// The action index of each webhook handed to the dispatcher and not finished yet.
final class WebhookDeliveries: Sendable {
    private let indexes = Mutex<[String: Int]>([:])

    func put(_ deliveryID: String, _ index: Int) {
        indexes.withLock { $0[deliveryID] = index }
    }

    func take(_ deliveryID: String) -> Int? {
        indexes.withLock { $0.removeValue(forKey: deliveryID) }
    }
}
