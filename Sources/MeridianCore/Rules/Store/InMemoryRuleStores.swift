import Foundation

/// Rules in memory (tests, and the reference the conformance suite holds the stores to).
public actor InMemoryRuleStore: RuleStore {
    private var current: [String: Rule] = [:]
    private var history: [String: [Rule]] = [:]

    public init() {}

    public func insert(_ rule: Rule) throws {
        guard current[rule.id] == nil else { throw RuleStoreError.duplicateID(rule.id) }
        guard !current.values.contains(where: { $0.tenantID == rule.tenantID && $0.name == rule.name }) else {
            throw RuleStoreError.nameTaken(rule.name)
        }
        current[rule.id] = rule
        history[rule.id] = [rule]
    }

    public func update(_ rule: Rule, expectedVersion: Int) throws -> Bool {
        guard let stored = current[rule.id], stored.tenantID == rule.tenantID, stored.version == expectedVersion else { return false }
        guard !current.values.contains(where: { $0.tenantID == rule.tenantID && $0.name == rule.name && $0.id != rule.id }) else {
            throw RuleStoreError.nameTaken(rule.name)
        }
        current[rule.id] = rule
        history[rule.id, default: []].append(rule)
        return true
    }

    public func delete(id: String, tenantID: String) -> Bool {
        guard let stored = current[id], stored.tenantID == tenantID else { return false }
        current[id] = nil
        history[id] = nil
        return true
    }

    public func rule(id: String, tenantID: String) -> Rule? {
        current[id].flatMap { $0.tenantID == tenantID ? $0 : nil }
    }

    public func rule(named name: String, tenantID: String) -> Rule? {
        current.values.first { $0.tenantID == tenantID && $0.name == name }
    }

    public func rules(tenantID: String) -> [Rule] {
        current.values.filter { $0.tenantID == tenantID }.sorted { ($0.name, $0.id) < ($1.name, $1.id) }
    }

    public func allRules() -> [Rule] {
        current.values.sorted { ($0.tenantID, $0.name) < ($1.tenantID, $1.name) }
    }

    public func versions(id: String, tenantID: String) -> [Rule] {
        guard current[id]?.tenantID == tenantID else { return [] }
        return (history[id] ?? []).sorted { $0.version > $1.version }
    }
}

/// Alarms in memory.
public actor InMemoryAlarmStore: AlarmStore {
    private var alarms: [String: Alarm] = [:]
    private var entries: [String: [AlarmHistoryEntry]] = [:]

    public init() {}

    public func save(_ change: AlarmChange) {
        alarms[change.alarm.id] = change.alarm
        entries[change.alarm.id, default: []].append(AlarmHistoryEntry(change))
    }

    public func alarm(id: String, tenantID: String) -> Alarm? {
        alarms[id].flatMap { $0.tenantID == tenantID ? $0 : nil }
    }

    public func alarms(_ filter: AlarmFilter, limit: Int, cursor: String?) -> Page<Alarm> {
        let bound = cursor.flatMap(RuleListCursor.parse)
        let sorted = alarms.values.filter(filter.matches)
            .map { (key: (RuleTime.milliseconds($0.raisedAt), $0.id), alarm: $0) }
            .filter { entry in bound.map { entry.key < ($0.milliseconds, $0.id) } ?? true }
            .sorted { $0.key > $1.key }
        let page = Array(sorted.prefix(limit))
        let next = sorted.count > limit ? page.last.map { RuleListCursor.cursor(milliseconds: $0.key.0, id: $0.key.1) } : nil
        return Page(items: page.map(\.alarm), nextCursor: next)
    }

    public func history(alarmID: String, tenantID: String) -> [AlarmHistoryEntry] {
        guard alarms[alarmID]?.tenantID == tenantID else { return [] }
        return entries[alarmID] ?? []
    }

    public func openAlarms() -> [Alarm] {
        alarms.values.filter { $0.status.isOpen }.sorted { $0.id < $1.id }
    }
}

/// Firings in memory.
public actor InMemoryRuleFiringStore: RuleFiringStore {
    private var firings: [String: RuleFiring] = [:]

    public init() {}

    public func insert(_ firing: RuleFiring) {
        firings[firing.id] = firing
    }

    public func record(_ outcome: RuleActionOutcome, firingID: String) {
        guard var firing = firings[firingID] else { return }
        firing.actions.setOutcome(outcome)
        firings[firingID] = firing
    }

    public func firing(id: String, tenantID: String) -> RuleFiring? {
        firings[id].flatMap { $0.tenantID == tenantID ? $0 : nil }
    }

    public func firings(tenantID: String, ruleID: String?, deviceID: String?, limit: Int, cursor: String?) -> Page<RuleFiring> {
        let bound = cursor.flatMap(RuleListCursor.parse)
        let sorted = firings.values
            .filter { firing in
                firing.tenantID == tenantID && (ruleID.map { firing.ruleID == $0 } ?? true) && (deviceID.map { firing.deviceID == $0 } ?? true)
            }
            .map { (key: ($0.at, $0.id), firing: $0) }
            .filter { entry in bound.map { entry.key < ($0.milliseconds, $0.id) } ?? true }
            .sorted { $0.key > $1.key }
        let page = Array(sorted.prefix(limit))
        let next = sorted.count > limit ? page.last.map { RuleListCursor.cursor(milliseconds: $0.key.0, id: $0.key.1) } : nil
        return Page(items: page.map(\.firing), nextCursor: next)
    }

    public func prune(recordedBefore date: Date) -> Int {
        let old = firings.values.filter { $0.recordedAt < date }.map(\.id)
        for id in old { firings[id] = nil }
        return old.count
    }
}

extension [RuleActionOutcome] {
    /// Replaces the outcome with the same index, or appends it (kept sorted by index).
    public mutating func setOutcome(_ outcome: RuleActionOutcome) {
        if let position = firstIndex(where: { $0.index == outcome.index }) {
            self[position] = outcome
        } else {
            append(outcome)
            sort { $0.index < $1.index }
        }
    }
}
