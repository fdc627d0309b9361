import Foundation

/// Why a rule store refused a write.
public enum RuleStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another rule of the tenant has this name.
    case nameTaken(String)
    /// A rule with this id exists.
    case duplicateID(String)

    public var description: String {
        switch self {
        case .nameTaken(let name): "a rule named '\(name)' exists"
        case .duplicateID(let id): "rule \(id) exists"
        }
    }
}

/// Where rules are kept, every version of each (SQLite or PostgreSQL in MeridianStorage; one
/// conformance suite runs against all implementations).
public protocol RuleStore: Sendable {
    /// Stores a new rule (normally version 1) and its first version. Throws
    /// ``RuleStoreError/nameTaken(_:)`` when the tenant has a rule of that name.
    func insert(_ rule: Rule) async throws
    /// Replaces the stored rule with `rule` (same id and tenant, `rule.version` =
    /// `expectedVersion + 1`) only if the stored version is `expectedVersion`, and keeps the new
    /// version in the history; returns whether it did. Throws ``RuleStoreError/nameTaken(_:)``
    /// when the new name is another rule's.
    func update(_ rule: Rule, expectedVersion: Int) async throws -> Bool
    /// Deletes a rule and its history; returns whether it existed.
    func delete(id: String, tenantID: String) async throws -> Bool
    func rule(id: String, tenantID: String) async throws -> Rule?
    func rule(named name: String, tenantID: String) async throws -> Rule?
    /// A tenant's rules, by name.
    func rules(tenantID: String) async throws -> [Rule]
    /// Every rule of every tenant (the engine loads them at start).
    func allRules() async throws -> [Rule]
    /// Every version of a rule, newest first (empty when there is no such rule).
    func versions(id: String, tenantID: String) async throws -> [Rule]
}

/// Which alarms to list.
public struct AlarmFilter: Sendable, Hashable {
    public var tenantID: String
    /// nil: any status.
    public var statuses: Set<AlarmStatus>?
    /// nil: any severity.
    public var severities: Set<AlarmSeverity>?
    public var deviceID: String?
    public var ruleID: String?
    /// Raised at or after.
    public var raisedFrom: Date?
    /// Raised before.
    public var raisedBefore: Date?

    public init(
        tenantID: String, statuses: Set<AlarmStatus>? = nil, severities: Set<AlarmSeverity>? = nil, deviceID: String? = nil,
        ruleID: String? = nil, raisedFrom: Date? = nil, raisedBefore: Date? = nil
    ) {
        self.tenantID = tenantID
        self.statuses = statuses
        self.severities = severities
        self.deviceID = deviceID
        self.ruleID = ruleID
        self.raisedFrom = raisedFrom
        self.raisedBefore = raisedBefore
    }

    /// Whether `alarm` passes the filter.
    public func matches(_ alarm: Alarm) -> Bool {
        alarm.tenantID == tenantID && (statuses?.contains(alarm.status) ?? true) && (severities?.contains(alarm.severity) ?? true)
            && (deviceID.map { $0 == alarm.deviceID } ?? true) && (ruleID.map { $0 == alarm.ruleID } ?? true)
            && (raisedFrom.map { alarm.raisedAt >= $0 } ?? true) && (raisedBefore.map { alarm.raisedAt < $0 } ?? true)
    }
}

/// The paging cursor of alarm and firing lists: milliseconds and id of the last item,
/// `1700000000000_alm_abc` (newest first, ties by id descending).
public enum RuleListCursor {
    public static func cursor(milliseconds: Int64, id: String) -> String { "\(milliseconds)_\(id)" }

    public static func parse(_ cursor: String) -> (milliseconds: Int64, id: String)? {
        guard let separator = cursor.firstIndex(of: "_"), let milliseconds = Int64(cursor[..<separator]) else { return nil }
        let id = String(cursor[cursor.index(after: separator)...])
        guard !id.isEmpty, !id.utf8.contains(0) else { return nil }
        return (milliseconds, id)
    }
}

/// Where alarms and their history are kept.
public protocol AlarmStore: Sendable {
    /// Writes the alarm as it is after `change` (inserting it when new) and appends the change
    /// to its history, in one transaction.
    func save(_ change: AlarmChange) async throws
    func alarm(id: String, tenantID: String) async throws -> Alarm?
    /// Alarms passing `filter`, newest `raisedAt` first (ties by id descending), after `cursor`.
    func alarms(_ filter: AlarmFilter, limit: Int, cursor: String?) async throws -> Page<Alarm>
    /// An alarm's history, oldest first.
    func history(alarmID: String, tenantID: String) async throws -> [AlarmHistoryEntry]
    /// Every open (active or acknowledged) alarm of every tenant (the engine's ledger at start).
    func openAlarms() async throws -> [Alarm]
}

/// Where firings are kept (with retention: ``prune(recordedBefore:)``).
public protocol RuleFiringStore: Sendable {
    func insert(_ firing: RuleFiring) async throws
    /// Replaces the outcome at `outcome.index` of a firing's actions (appending when the list is
    /// shorter); does nothing when the firing is gone.
    func record(_ outcome: RuleActionOutcome, firingID: String) async throws
    func firing(id: String, tenantID: String) async throws -> RuleFiring?
    /// Firings, newest `at` first (ties by id descending), filtered by rule and device.
    func firings(tenantID: String, ruleID: String?, deviceID: String?, limit: Int, cursor: String?) async throws -> Page<RuleFiring>
    /// Deletes firings recorded before `date`; returns how many.
    func prune(recordedBefore date: Date) async throws -> Int
}
