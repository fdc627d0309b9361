import Foundation
import Logging
import MeridianCore
import Metrics
import ServiceLifecycle
import Synchronization

/// Runs the rules on the platform's flow: every durable telemetry batch, presence event and twin
/// change is queued here and evaluated by one task over ``RuleEngineCore`` (incremental, no query
/// per sample); transitions raise and clear alarms, are recorded as firings, and hand their
/// actions to ``RuleActionRunner``'s queues.
///
/// Ingestion never waits for rules: the pipeline's listener only appends its batch to the
/// engine's queue. Should the engine fall more than ``Settings/maximumQueuedSamples`` behind,
/// batches are skipped for evaluation (counted in `meridian_rules_skipped_samples_total` and
/// logged) — telemetry is stored regardless.
public final class RuleEngine: Service, Sendable {
    public struct Settings: Sendable {
        /// How often no-data and presence conditions are checked.
        public var tickInterval: Duration = .seconds(1)
        /// How often the registry facts of tracked devices (labels, profile) are read again.
        public var refreshInterval: Duration = .seconds(60)
        /// Samples queued for evaluation beyond which batches are skipped.
        public var maximumQueuedSamples = 2_000_000
        /// How long firings are kept.
        public var firingRetention: Duration = .seconds(30 * 86_400)

        public init() {}
    }

    enum Work: Sendable {
        case messages([DeviceMessage])
        case presence(PresenceEvent)
        case twin(TwinChange)
        case tick(Int64)
        case rule(RuleChange)
        case refresh
        case barrier(CheckedContinuation<Void, Never>)
    }

    let rules: RuleService
    let alarms: AlarmService
    let firings: any RuleFiringStore
    private let registry: Registry
    private let twins: TwinService?
    private let presence: PresenceService?
    private let settings: Settings
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let runner: Mutex<RuleActionRunner?> = Mutex(nil)
    private let input: AsyncStream<Work>.Continuation
    private let stream: AsyncStream<Work>
    private let queuedSamples = Atomic<Int>(0)
    private let recorder: AsyncStream<FiringWrite>.Continuation
    private let recorderStream: AsyncStream<FiringWrite>
    private let firingObservers = Mutex<[@Sendable (RuleFiring) -> Void]>([])
    private let skipped = Counter(label: "meridian_rules_skipped_samples_total")
    private let firingsCounter = Counter(label: "meridian_rule_firings_total")
    private let evaluated = Counter(label: "meridian_rules_evaluated_samples_total")

    enum FiringWrite: Sendable {
        case insert(RuleFiring)
        case outcome(RuleActionOutcome, String)
        case barrier(CheckedContinuation<Void, Never>)
    }

    public init(
        rules: RuleService, alarms: AlarmService, firings: any RuleFiringStore, registry: Registry, twins: TwinService? = nil,
        presence: PresenceService? = nil, settings: Settings = Settings(), logger: Logger, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.rules = rules
        self.alarms = alarms
        self.firings = firings
        self.registry = registry
        self.twins = twins
        self.presence = presence
        self.settings = settings
        self.logger = logger
        self.now = now
        (stream, input) = AsyncStream<Work>.makeStream()
        (recorderStream, recorder) = AsyncStream<FiringWrite>.makeStream()
        rules.observe { [input] change in input.yield(.rule(change)) }
        twins?.observe { [input] change in input.yield(.twin(change)) }
        _ = presence?.addListener { [input] event in input.yield(.presence(event)) }
    }

    /// Connects the actions (created after the engine: they need the broker and the pipeline).
    func attach(_ actions: RuleActionRunner) {
        runner.withLock { $0 = actions }
    }

    /// Feeds the engine from the pipeline (after each batch is durable).
    public func follow(_ pipeline: TelemetryPipeline) {
        _ = pipeline.addListener { [self] messages in submit(messages) }
    }

    /// Queues a batch for evaluation; never blocks.
    public func submit(_ messages: [DeviceMessage]) {
        var samples = 0
        for message in messages { samples += message.samples.count }
        if queuedSamples.load(ordering: .relaxed) + samples > settings.maximumQueuedSamples {
            skipped.increment(by: samples)
            logger.warning("rule evaluation is behind; a batch was skipped for rules (it is stored)", metadata: ["telemetry.samples": "\(samples)"])
            return
        }
        queuedSamples.add(samples, ordering: .relaxed)
        input.yield(.messages(messages))
    }

    /// Calls `observer` with every firing as it is recorded.
    public func observeFirings(_ observer: @escaping @Sendable (RuleFiring) -> Void) {
        firingObservers.withLock { $0.append(observer) }
    }

    /// Records an action's outcome on its firing (the webhook dispatcher calls this).
    public func record(_ outcome: RuleActionOutcome, firingID: String) {
        recorder.yield(.outcome(outcome, firingID))
    }

    /// Records what the webhook dispatcher did with a rule's webhook: `index` is the action's
    /// position when known (a live delivery); for a replay it is found on the stored firing by
    /// the delivery id its pending outcome named.
    func webhookOutcome(_ request: WebhookRequest, _ outcome: WebhookOutcome, index: Int?) {
        guard let firingID = request.firingID else { return }
        let result: (RuleActionOutcome.Status, String, Int)
        switch outcome {
        case .delivered(let status, let attempts):
            result = (.succeeded, "HTTP \(status) after \(attempts) attempt\(attempts == 1 ? "" : "s") (delivery \(request.deliveryID))", attempts)
        case .deadLettered(let letter):
            result = (.deadLettered, "\(letter.lastError) after \(letter.attempts) attempt\(letter.attempts == 1 ? "" : "s"): dead letter \(letter.id) (delivery \(request.deliveryID))", letter.attempts)
        case .dropped(let reason):
            result = (.dropped, reason, 0)
        }
        if let index {
            record(RuleActionOutcome(index: index, type: "webhook", status: result.0, detail: result.1, attempts: result.2, at: now()), firingID: firingID)
            return
        }
        Task { [firings, now] in
            guard let firing = try? await firings.firing(id: firingID, tenantID: request.tenantID),
                let found = firing.actions.first(where: { $0.type == "webhook" && $0.detail.contains(request.deliveryID) })
            else { return }
            record(RuleActionOutcome(index: found.index, type: "webhook", status: result.0, detail: result.1, attempts: found.attempts + result.2, at: now()), firingID: firingID)
        }
    }

    /// Waits until everything queued so far has been evaluated and its firings stored (tests).
    public func settle() async {
        await withCheckedContinuation { continuation in input.yield(.barrier(continuation)) }
        await alarms.flush()
    }

    /// Checks no-data and presence conditions at `time` (tests drive the clock with this).
    public func tick(at time: Date) async {
        input.yield(.tick(RuleTime.milliseconds(time)))
        await settle()
    }

    public func run() async throws {
        let engine = Task { await process() }
        let recording = Task { await recordFirings() }
        let ticker = Task { [input, settings, now] in
            var sinceRefresh = Duration.zero
            while !Task.isCancelled {
                try? await Task.sleep(for: settings.tickInterval)
                input.yield(.tick(RuleTime.milliseconds(now())))
                sinceRefresh += settings.tickInterval
                if sinceRefresh >= settings.refreshInterval {
                    sinceRefresh = .zero
                    input.yield(.refresh)
                }
            }
        }
        let pruner = Task { [firings, settings, now, logger] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(3600))
                let cutoff = now().addingTimeInterval(-Double(settings.firingRetention.components.seconds))
                do { _ = try await firings.prune(recordedBefore: cutoff) } catch { logger.warning("pruning rule firings failed", metadata: ["error": "\(error)"]) }
            }
        }
        try? await gracefulShutdown()
        ticker.cancel()
        pruner.cancel()
        input.finish()
        await engine.value
        await runner.withLock({ $0 })?.shutdown()
        recorder.finish()
        await recording.value
        await alarms.shutdown()
    }

    // MARK: the engine task

    private struct Cache {
        var profileNames: [String: [String: String]] = [:]
    }

    private func process() async {
        var core = RuleEngineCore()
        var cache = Cache()
        do {
            core.load(try await rules.store.allRules())
        } catch {
            logger.error("could not load the rules; none run until one is saved", metadata: ["error": "\(error)"])
        }
        for tenantID in Set(core.allRules.filter(\.enabled).map(\.tenantID)) {
            await trackAll(tenantID: tenantID, core: &core, cache: &cache)
        }
        // Alarms open when the server stopped: their rules start raised, so that the clear
        // condition clears them (an alarm of a rule changed or gone meanwhile is cleared).
        for tenantID in Set(alarms.allOpenAlarms.map(\.tenantID)) {
            for alarm in alarms.openAlarms(tenantID: tenantID) {
                let current = core.allRules.first { $0.id == alarm.ruleID && $0.tenantID == tenantID }
                if let current, current.enabled,
                    core.assumeRaised(ruleID: alarm.ruleID, tenantID: tenantID, deviceID: alarm.deviceID)
                {
                    continue
                }
                alarms.clear(ruleID: alarm.ruleID, tenantID: tenantID, deviceID: alarm.deviceID, at: now())
            }
        }
        for await work in stream {
            let events: [RuleEngineEvent]
            switch work {
            case .messages(let messages):
                var collected: [RuleEngineEvent] = []
                var samples = 0
                let time = RuleTime.milliseconds(now())
                for message in messages {
                    samples += message.samples.count
                    guard core.hasRules(tenantID: message.tenantID) else { continue }
                    if !core.knows(tenantID: message.tenantID, deviceID: message.deviceID) {
                        guard let info = await deviceInfo(tenantID: message.tenantID, deviceID: message.deviceID, cache: &cache) else { continue }
                        core.track(info, now: time)
                        await loadTwinIfNeeded(tenantID: message.tenantID, deviceID: message.deviceID, core: &core)
                    }
                    collected += core.observe(message, now: time)
                }
                queuedSamples.subtract(samples, ordering: .relaxed)
                evaluated.increment(by: samples)
                events = collected
            case .presence(let event):
                events = core.observePresence(
                    tenantID: event.tenantID, deviceID: event.deviceID, online: event.online, at: RuleTime.milliseconds(event.time)
                )
            case .twin(let change):
                guard change.key.name.isEmpty else { continue }
                events = core.twinChanged(
                    tenantID: change.key.tenantID, deviceID: change.key.deviceID, reported: .object(change.current.reported),
                    desired: .object(change.current.desired), at: RuleTime.milliseconds(now())
                )
            case .tick(let time):
                events = core.tick(now: time)
            case .rule(let change):
                events = []
                await apply(change, core: &core, cache: &cache)
            case .refresh:
                events = []
                cache.profileNames = [:]
                for tenantID in Set(core.allRules.filter(\.enabled).map(\.tenantID)) {
                    await trackAll(tenantID: tenantID, core: &core, cache: &cache)
                }
            case .barrier(let continuation):
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    recorder.yield(.barrier(done))
                }
                continuation.resume()
                continue
            }
            if !events.isEmpty { handle(events) }
        }
    }

    private func apply(_ change: RuleChange, core: inout RuleEngineCore, cache: inout Cache) async {
        switch change {
        case .saved(let rule):
            let reset = core.upsert(rule)
            if reset { alarms.clearAll(ruleID: rule.id, tenantID: rule.tenantID) }
            if rule.enabled { await trackAll(tenantID: rule.tenantID, core: &core, cache: &cache) }
            logger.info("rule saved", metadata: ["rule.id": "\(rule.id)", "rule.version": "\(rule.version)", "rule.enabled": "\(rule.enabled)"])
        case .deleted(let ruleID, let tenantID):
            core.remove(ruleID: ruleID, tenantID: tenantID)
            alarms.clearAll(ruleID: ruleID, tenantID: tenantID)
        }
    }

    private func systemCaller(_ tenantID: String) -> Caller {
        Caller(tenantID: tenantID, role: .owner, actor: AuditActor(kind: .system, id: "rules"))
    }

    private func profileName(_ profileID: String?, tenantID: String, cache: inout Cache) async -> String? {
        guard let profileID else { return nil }
        if cache.profileNames[tenantID] == nil {
            let profiles = (try? await registry.profiles(by: systemCaller(tenantID))) ?? []
            cache.profileNames[tenantID] = Dictionary(profiles.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        }
        return cache.profileNames[tenantID]?[profileID]
    }

    private func deviceInfo(tenantID: String, deviceID: String, cache: inout Cache) async -> RuleDeviceInfo? {
        guard let device = try? await registry.device(deviceID, by: systemCaller(tenantID)) else { return nil }
        return RuleDeviceInfo(device: device, profileName: await profileName(device.profileID, tenantID: tenantID, cache: &cache))
    }

    /// Tracks every device of a tenant (so that no-data and presence rules watch devices that
    /// never send, and label or profile changes reach the scopes).
    private func trackAll(tenantID: String, core: inout RuleEngineCore, cache: inout Cache) async {
        let caller = systemCaller(tenantID)
        var after: String?
        let time = RuleTime.milliseconds(now())
        repeat {
            guard let page = try? await registry.devices(DeviceQuery(tenantID: tenantID, limit: 1_000, after: after), by: caller) else { return }
            var online: Set<String> = []
            if let presence, core.allRules.contains(where: { $0.tenantID == tenantID && $0.enabled && $0.definition.condition.isPresence }) {
                online = (try? await presence.onlineDevices(among: page.items.map(\.id))) ?? []
            }
            for device in page.items {
                let info = RuleDeviceInfo(device: device, profileName: await profileName(device.profileID, tenantID: tenantID, cache: &cache))
                let known = core.knows(tenantID: tenantID, deviceID: device.id)
                core.track(info, online: known ? nil : online.contains(device.id), now: time)
                await loadTwinIfNeeded(tenantID: tenantID, deviceID: device.id, core: &core)
            }
            after = page.nextCursor
        } while after != nil
    }

    private func loadTwinIfNeeded(tenantID: String, deviceID: String, core: inout RuleEngineCore) async {
        guard let twins, core.needsTwin(tenantID: tenantID, deviceID: deviceID) else { return }
        guard let document = try? await twins.twin(TwinKey(tenantID: tenantID, deviceID: deviceID)) else { return }
        core.setTwin(tenantID: tenantID, deviceID: deviceID, reported: .object(document.reported), desired: .object(document.desired))
    }

    // MARK: acting on transitions

    private func handle(_ events: [RuleEngineEvent]) {
        let runner = runner.withLock { $0 }
        for event in events {
            let rule = event.rule
            let reason = event.transition.reason
            let isRaise = event.transition.isRaise
            let at = Date(timeIntervalSince1970: Double(reason.timestamp) / 1000)
            var firing = RuleFiring(
                id: "fir_" + MeridianID.generate(), tenantID: rule.tenantID, ruleID: rule.id, ruleName: rule.name, ruleVersion: rule.version,
                deviceID: event.deviceID, event: isRaise ? .raise : .clear, at: reason.timestamp, recordedAt: now(), message: reason.message,
                values: reason.values, alarmID: nil, actions: []
            )
            if let alarm = rule.definition.alarm {
                if isRaise {
                    let template = RuleTemplate(firing: firing, deviceName: nil, severity: alarm.severity)
                    let message = alarm.message.map(template.text) ?? rule.name
                    firing.alarmID =
                        alarms.raise(rule: rule, deviceID: event.deviceID, severity: alarm.severity, message: message, inputs: reason.values, at: at)
                        .alarm.id
                } else {
                    firing.alarmID = alarms.clear(ruleID: rule.id, tenantID: rule.tenantID, deviceID: event.deviceID, at: at)?.alarm.id
                }
            }
            let template = RuleTemplate(firing: firing, deviceName: nil, severity: rule.definition.alarm?.severity)
            let jobs = rule.definition.actions.enumerated().filter { $0.element.when.matches(raise: isRaise) }.map {
                RuleActionJob(firing: firing, index: $0.offset, action: $0.element, template: template, severity: rule.definition.alarm?.severity)
            }
            if let runner {
                firing.actions = runner.submit(jobs)
            } else {
                firing.actions = jobs.map {
                    RuleActionOutcome(index: $0.index, type: $0.action.kind.name, status: .failed, detail: "actions are not available", at: now())
                }
            }
            firingsCounter.increment()
            recorder.yield(.insert(firing))
        }
    }

    private func recordFirings() async {
        for await write in recorderStream {
            switch write {
            case .barrier(let done):
                done.resume()
            case .insert(let firing):
                do {
                    try await firings.insert(firing)
                } catch {
                    logger.error("a rule firing could not be stored", metadata: ["rule.id": "\(firing.ruleID)", "error": "\(error)"])
                }
                for observer in firingObservers.withLock({ $0 }) { observer(firing) }
            case .outcome(let outcome, let firingID):
                do {
                    try await firings.record(outcome, firingID: firingID)
                } catch {
                    logger.error("a rule action outcome could not be stored", metadata: ["firing.id": "\(firingID)", "error": "\(error)"])
                }
            }
        }
    }
}

extension RuleCondition {
    var isPresence: Bool {
        if case .presence = self { return true }
        return false
    }
}
