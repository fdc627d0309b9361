/// The registry facts a rule's scope is matched on.
public struct RuleDeviceInfo: Sendable, Hashable {
    public var device: Device
    /// The name of the device's profile (scopes may name a profile by id or name).
    public var profileName: String?

    public init(device: Device, profileName: String?) {
        self.device = device
        self.profileName = profileName
    }
}

/// A rule's condition changed state on a device: what to raise or clear, act on and record.
public struct RuleEngineEvent: Sendable {
    /// The rule, at the version evaluated.
    public var rule: Rule
    public var deviceID: String
    public var transition: RuleTransition

    public init(rule: Rule, deviceID: String, transition: RuleTransition) {
        self.rule = rule
        self.deviceID = deviceID
        self.transition = transition
    }
}

/// The rule engine's state and logic, without threads, clocks or storage: the rules, and per
/// device its values and one condition evaluator per rule in its scope. Fed messages, presence,
/// twin changes and ticks (all with their own timestamps: a virtual clock in tests and dry
/// runs), it returns the transitions.
///
/// Incremental: a message is applied to its device's values once, then only the rules that read
/// one of its keys are evaluated, each on its own small state — no query per sample. Samples of
/// one message are handled timestamp by timestamp, oldest first.
///
/// Not thread-safe: one owner (the server's engine task, or a dry run) drives it.
public struct RuleEngineCore: Sendable {
    private struct DeviceKey: Hashable {
        var tenantID: String
        var deviceID: String
    }

    private struct DeviceState {
        var info: RuleDeviceInfo
        var values = RuleDeviceValues()
        /// The rules in scope (enabled), computed for ``generation``, in id order.
        var ruleIDs: [String] = []
        /// Positions in ``ruleIDs`` of the rules reading each key (ascending); of the rules
        /// reading any key under "".
        var byKey: [String: [Int]] = [:]
        /// Positions in ``ruleIDs`` of the rules time alone can raise (no data, presence).
        var ticking: [Int] = []
        var generation = -1
        var evaluators: [String: RuleConditionEvaluator] = [:]
        var online: Bool?
    }

    private var rules: [String: [String: Rule]] = [:]
    /// Tenants with at least one enabled rule.
    private var activeTenants: Set<String> = []
    private var devices: [DeviceKey: DeviceState] = [:]
    /// Bumped on every rule change: devices recompute their rules lazily.
    private var generation = 0
    /// Reused by ``observe(_:info:now:)``: positions of the rules a group of samples reaches.
    private var affected: [Int] = []

    public init() {}

    /// Every rule loaded, enabled or not.
    public var allRules: [Rule] { rules.values.flatMap(\.values) }

    /// The number of devices tracked.
    public var deviceCount: Int { devices.count }

    /// Replaces every rule (start-up).
    public mutating func load(_ all: [Rule]) {
        rules = [:]
        for rule in all { rules[rule.tenantID, default: [:]][rule.id] = rule }
        activeTenants = Set(all.filter(\.enabled).map(\.tenantID))
        for key in devices.keys { devices[key]?.evaluators = [:] }
        generation += 1
    }

    private mutating func recount(tenantID: String) {
        if rules[tenantID]?.values.contains(where: \.enabled) ?? false {
            activeTenants.insert(tenantID)
        } else {
            activeTenants.remove(tenantID)
        }
    }

    /// Adds or replaces a rule. When its scope or condition changed, its state on every device
    /// starts afresh (the caller clears its open alarms); a change of name, alarm or actions
    /// keeps the state. Returns whether the state was reset.
    @discardableResult
    public mutating func upsert(_ rule: Rule) -> Bool {
        let previous = rules[rule.tenantID]?[rule.id]
        rules[rule.tenantID, default: [:]][rule.id] = rule
        let reset =
            previous == nil || previous?.definition.scope != rule.definition.scope
            || previous?.definition.condition != rule.definition.condition || previous?.enabled != rule.enabled
        if reset {
            for key in devices.keys where key.tenantID == rule.tenantID { devices[key]?.evaluators[rule.id] = nil }
        }
        recount(tenantID: rule.tenantID)
        generation += 1
        return reset
    }

    /// Removes a rule and its state.
    public mutating func remove(ruleID: String, tenantID: String) {
        rules[tenantID]?[ruleID] = nil
        for key in devices.keys where key.tenantID == tenantID { devices[key]?.evaluators[ruleID] = nil }
        recount(tenantID: tenantID)
        generation += 1
    }

    /// Whether the engine has registry facts for the device.
    public func knows(tenantID: String, deviceID: String) -> Bool {
        devices[DeviceKey(tenantID: tenantID, deviceID: deviceID)] != nil
    }

    /// Whether any enabled rule of the tenant exists (a tenant without rules costs nothing).
    public func hasRules(tenantID: String) -> Bool {
        activeTenants.contains(tenantID)
    }

    /// Tracks a device or updates its registry facts; its rules are recomputed. `now` starts the
    /// clocks of no-data and presence conditions for a device never seen.
    public mutating func track(_ info: RuleDeviceInfo, online: Bool? = nil, now: Int64) {
        let key = DeviceKey(tenantID: info.device.tenantID, deviceID: info.device.id)
        var state = devices[key] ?? DeviceState(info: info)
        if state.info != info {
            state.info = info
            state.generation = -1
        }
        if let online { state.online = online }
        Self.refresh(&state, rules: rules, generation: generation, now: now)
        devices[key] = state
    }

    /// Forgets a device.
    public mutating func forget(tenantID: String, deviceID: String) {
        devices[DeviceKey(tenantID: tenantID, deviceID: deviceID)] = nil
    }

    /// The rules of a device's scope, recomputed when the rules or the device changed; creates
    /// the evaluators of new rules and the windows their expressions read.
    private static func refresh(_ state: inout DeviceState, rules: [String: [String: Rule]], generation: Int, now: Int64) {
        guard state.generation != generation else { return }
        state.generation = generation
        let tenantRules = rules[state.info.device.tenantID] ?? [:]
        let inScope = tenantRules.values
            .filter { $0.enabled && $0.definition.scope.contains(state.info.device, profileName: state.info.profileName) }
            .sorted { $0.id < $1.id }
        state.ruleIDs = inScope.map(\.id)
        state.byKey = [:]
        state.ticking = []
        let ids = Set(state.ruleIDs)
        state.evaluators = state.evaluators.filter { ids.contains($0.key) }
        for (position, rule) in inScope.enumerated() {
            if let keys = rule.definition.condition.keys {
                for key in keys { state.byKey[key, default: []].append(position) }
            } else {
                state.byKey["", default: []].append(position)
            }
            if rule.definition.condition.needsTicks { state.ticking.append(position) }
            if case .expression(let condition) = rule.definition.condition {
                for window in condition.windows { state.values.keepWindow(key: window.key, spanning: window.durationMilliseconds) }
            }
            if state.evaluators[rule.id] == nil {
                state.evaluators[rule.id] = RuleConditionEvaluator(rule.definition.condition, startedAt: now, online: state.online)
            }
        }
    }

    /// Applies a device's message; `info` is needed the first time a device is seen (nil: the
    /// message is skipped when the device is unknown). Returns the transitions, oldest first.
    public mutating func observe(_ message: DeviceMessage, info: RuleDeviceInfo? = nil, now: Int64) -> [RuleEngineEvent] {
        let key = DeviceKey(tenantID: message.tenantID, deviceID: message.deviceID)
        // The state leaves the dictionary while it changes, so that its values, windows and
        // evaluators are changed in place instead of copied (copy on write) on every message.
        var state: DeviceState
        if let existing = devices.removeValue(forKey: key) {
            state = existing
        } else {
            guard let info else { return [] }
            state = DeviceState(info: info)
        }
        defer { devices[key] = state }
        Self.refresh(&state, rules: rules, generation: generation, now: now)
        var events: [RuleEngineEvent] = []
        var samples = message.samples
        if samples.count > 1, zip(samples, samples.dropFirst()).contains(where: { $0.timestamp > $1.timestamp }) {
            samples.sort { $0.timestamp < $1.timestamp }
        }
        var start = samples.startIndex
        while start < samples.endIndex {
            let timestamp = samples[start].timestamp
            var end = start
            while end < samples.endIndex, samples[end].timestamp == timestamp { end += 1 }
            let group = samples[start..<end]
            for sample in group { state.values.apply(sample) }
            if !state.ruleIDs.isEmpty {
                // The rules reading one of the group's keys (or any key), each once, in id order
                // (positions in ruleIDs, which is sorted by id).
                affected.removeAll(keepingCapacity: true)
                if let any = state.byKey[""] { affected.append(contentsOf: any) }
                for sample in group { if let positions = state.byKey[sample.key] { affected.append(contentsOf: positions) } }
                if affected.count > 1 {
                    affected.sort()
                    var kept = 1
                    for index in 1..<affected.count where affected[index] != affected[kept - 1] {
                        affected[kept] = affected[index]
                        kept += 1
                    }
                    affected.removeLast(affected.count - kept)
                }
                for position in affected {
                    let ruleID = state.ruleIDs[position]
                    guard let transitions = state.evaluators[ruleID]?.observe(group, at: timestamp, values: state.values), !transitions.isEmpty,
                        let rule = rules[message.tenantID]?[ruleID]
                    else { continue }
                    for transition in transitions {
                        events.append(RuleEngineEvent(rule: rule, deviceID: message.deviceID, transition: transition))
                    }
                }
            }
            start = end
        }
        return events
    }

    /// A device connected or disconnected.
    public mutating func observePresence(tenantID: String, deviceID: String, online: Bool, at timestamp: Int64) -> [RuleEngineEvent] {
        let key = DeviceKey(tenantID: tenantID, deviceID: deviceID)
        guard var state = devices.removeValue(forKey: key) else { return [] }
        defer { devices[key] = state }
        state.online = online
        Self.refresh(&state, rules: rules, generation: generation, now: timestamp)
        var events: [RuleEngineEvent] = []
        for ruleID in state.ruleIDs {
            guard let rule = rules[tenantID]?[ruleID], let transition = state.evaluators[ruleID]?.observe(online: online, at: timestamp) else { continue }
            events.append(RuleEngineEvent(rule: rule, deviceID: deviceID, transition: transition))
        }
        return events
    }

    /// A device's twin changed: its documents are kept, and expressions that read the twin are
    /// evaluated.
    public mutating func twinChanged(
        tenantID: String, deviceID: String, reported: JSONValue, desired: JSONValue, at timestamp: Int64
    ) -> [RuleEngineEvent] {
        let key = DeviceKey(tenantID: tenantID, deviceID: deviceID)
        guard var state = devices.removeValue(forKey: key) else { return [] }
        defer { devices[key] = state }
        state.values.reported = reported
        state.values.desired = desired
        Self.refresh(&state, rules: rules, generation: generation, now: timestamp)
        var events: [RuleEngineEvent] = []
        for ruleID in state.ruleIDs {
            guard let rule = rules[tenantID]?[ruleID], let transition = state.evaluators[ruleID]?.twinChanged(at: timestamp, values: state.values)
            else { continue }
            events.append(RuleEngineEvent(rule: rule, deviceID: deviceID, transition: transition))
        }
        return events
    }

    /// Sets a device's twin documents without evaluating (first load).
    public mutating func setTwin(tenantID: String, deviceID: String, reported: JSONValue, desired: JSONValue) {
        let key = DeviceKey(tenantID: tenantID, deviceID: deviceID)
        devices[key]?.values.reported = reported
        devices[key]?.values.desired = desired
    }

    /// Whether a device's rules read its twin and its documents are not loaded yet.
    public func needsTwin(tenantID: String, deviceID: String) -> Bool {
        let key = DeviceKey(tenantID: tenantID, deviceID: deviceID)
        guard let state = devices[key], state.values.reported == nil, let tenantRules = rules[tenantID] else { return false }
        return tenantRules.values.contains { rule in
            guard rule.enabled, case .expression(let condition) = rule.definition.condition, condition.readsTwin else { return false }
            return rule.definition.scope.contains(state.info.device, profileName: state.info.profileName)
        }
    }

    /// Time passed: no-data and presence conditions may raise.
    public mutating func tick(now: Int64) -> [RuleEngineEvent] {
        var events: [RuleEngineEvent] = []
        let rules = rules
        let generation = generation
        // In place (no copy of each device's state), visiting only the rules that tick.
        var index = devices.startIndex
        while index != devices.endIndex {
            let key = devices.keys[index]
            Self.tick(&devices.values[index], key: key, rules: rules, generation: generation, now: now, into: &events)
            devices.formIndex(after: &index)
        }
        return events
    }

    /// Marks a rule raised on a tracked device (its alarm was open at start), so that its clear
    /// condition clears the alarm. Returns false when the device is not tracked or the rule is not
    /// in its scope.
    @discardableResult
    public mutating func assumeRaised(ruleID: String, tenantID: String, deviceID: String) -> Bool {
        let key = DeviceKey(tenantID: tenantID, deviceID: deviceID)
        guard var state = devices[key] else { return false }
        Self.refresh(&state, rules: rules, generation: generation, now: 0)
        guard var evaluator = state.evaluators[ruleID] else { return false }
        evaluator.assumeRaised()
        state.evaluators[ruleID] = evaluator
        devices[key] = state
        return true
    }

    private static func tick(
        _ state: inout DeviceState, key: DeviceKey, rules: [String: [String: Rule]], generation: Int, now: Int64, into events: inout [RuleEngineEvent]
    ) {
        refresh(&state, rules: rules, generation: generation, now: now)
        for position in state.ticking {
            let ruleID = state.ruleIDs[position]
            guard let transition = state.evaluators[ruleID]?.tick(now: now), let rule = rules[key.tenantID]?[ruleID] else { continue }
            events.append(RuleEngineEvent(rule: rule, deviceID: key.deviceID, transition: transition))
        }
    }

    /// Whether the rule is raised on the device now.
    public func isRaised(ruleID: String, tenantID: String, deviceID: String) -> Bool {
        devices[DeviceKey(tenantID: tenantID, deviceID: deviceID)]?.evaluators[ruleID]?.isRaised ?? false
    }
}
