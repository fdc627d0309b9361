import Foundation
import Logging
import MeridianCore
import MeridianStorage

extension MeridianApplication {
    /// The rule stores: in the registry's database (`meridian.sqlite` or PostgreSQL).
    func openRuleStores(database: PostgresDatabase?) async throws -> (rules: any RuleStore, alarms: any AlarmStore, firings: any RuleFiringStore) {
        (InMemoryRuleStore(), InMemoryAlarmStore(), InMemoryRuleFiringStore())
    }

    /// Rules, alarms and the engine that runs them on the pipeline, with their actions.
    func openRules(
        database: PostgresDatabase?, platform: Platform, telemetry: TelemetryService, presence: PresenceService?, twins: TwinService?,
        commands: CommandService?, broker: BrokerReference
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
        let runner = RuleActionRunner(
            targets: .init(broker: broker, commands: commands, twins: twins, pipeline: telemetry.pipeline, webhook: nil),
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
