import Foundation
import MeridianCore
import PostgresNIO

/// Alarms and their history in PostgreSQL (the registry's database; migration component
/// `rules`): the same behaviour as ``SQLiteAlarmStore``. Writers of one alarm serialize on one
/// of 32 advisory locks (by alarm id), so that its history stays in order while writers of
/// different alarms mostly run side by side.
public final class PostgresAlarmStore: AlarmStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    public let database: PostgresDatabase
    /// The first of the alarm writers' advisory locks ("ALARM" in ASCII, plus the stripe).
    static let writeLockBase: Int64 = 0x414C_4152_4D00_0000

    /// Opens the alarms in `database` (whose pool must be running) and migrates the rule tables.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(RuleSchema.postgres)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    private static func alarm(_ row: PostgresRandomAccessRow) throws -> Alarm {
        try RuleRows.decode(Alarm.self, try row.value("document"), what: "alarm")
    }

    public func save(_ change: AlarmChange) async throws {
        let alarm = change.alarm
        try RuleRows.requireStorable(alarm.id, alarm.tenantID, alarm.ruleID, alarm.deviceID, what: "alarm")
        let document = try RuleRows.document(alarm)
        let entry = try RuleRows.document(AlarmHistoryEntry(change))
        let at = RuleRows.milliseconds(change.at)
        let raisedAt = RuleRows.milliseconds(alarm.raisedAt)
        _ = try await database.transaction(.write(lock: RuleRows.lockStripe(base: Self.writeLockBase, alarm.id))) {
            session in
            try session.execute(
                """
                INSERT INTO alarms (id, tenant_id, rule_id, device_id, status, severity, raised_at, document)
                VALUES (\(alarm.id), \(alarm.tenantID), \(alarm.ruleID), \(alarm.deviceID), \(alarm.status.rawValue),
                \(alarm.severity.rawValue), \(raisedAt), \(document))
                ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, rule_id = excluded.rule_id,
                device_id = excluded.device_id, status = excluded.status, severity = excluded.severity,
                raised_at = excluded.raised_at, document = excluded.document
                """
            )
            try session.execute(
                """
                INSERT INTO alarm_history (alarm_id, sequence, at, document)
                SELECT \(alarm.id), COALESCE(MAX(sequence), 0) + 1, \(at), \(entry) FROM alarm_history WHERE alarm_id = \(alarm.id)
                """
            )
        }
    }

    public func alarm(id: String, tenantID: String) async throws -> Alarm? {
        guard RuleRows.storable(id, tenantID) else { return nil }
        return try await database.transaction(.read) { session in
            try session.row("SELECT document FROM alarms WHERE id = \(id) AND tenant_id = \(tenantID)").map(Self.alarm)
        }
    }

    public func alarms(_ filter: AlarmFilter, limit: Int, cursor: String?) async throws -> Page<Alarm> {
        let empty = Page<Alarm>(items: [], nextCursor: nil)
        guard RuleRows.storable(filter.tenantID, filter.deviceID ?? "", filter.ruleID ?? "") else { return empty }
        if filter.statuses?.isEmpty == true || filter.severities?.isEmpty == true { return empty }
        var statement = PostgresStatement("SELECT document FROM alarms WHERE tenant_id = ")
        let tenant = statement.bind(filter.tenantID)
        statement.append(tenant)
        if let statuses = filter.statuses?.map(\.rawValue).sorted() {
            let placeholder = statement.bind(statuses)
            statement.append(" AND status = ANY(\(placeholder))")
            // Lets the open-alarms index serve a list of open alarms.
            if !statuses.contains(AlarmStatus.cleared.rawValue) { statement.append(" AND status <> 'cleared'") }
        }
        if let severities = filter.severities?.map(\.rawValue).sorted() {
            let placeholder = statement.bind(severities)
            statement.append(" AND severity = ANY(\(placeholder))")
        }
        if let deviceID = filter.deviceID {
            let placeholder = statement.bind(deviceID)
            statement.append(" AND device_id = \(placeholder)")
        }
        if let ruleID = filter.ruleID {
            let placeholder = statement.bind(ruleID)
            statement.append(" AND rule_id = \(placeholder)")
        }
        if let from = filter.raisedFrom {
            let placeholder = statement.bind(RuleRows.milliseconds(from))
            statement.append(" AND raised_at >= \(placeholder)")
        }
        if let before = filter.raisedBefore {
            let placeholder = statement.bind(RuleRows.milliseconds(before))
            statement.append(" AND raised_at < \(placeholder)")
        }
        if let bound = cursor.flatMap(RuleListCursor.parse) {
            guard RuleRows.storable(bound.id) else { return empty }
            let milliseconds = statement.bind(bound.milliseconds)
            let id = statement.bind(bound.id)
            statement.append(" AND (raised_at, id) < (\(milliseconds), \(id))")
        }
        let fetch = statement.bind(Int64(max(limit, 0) + 1))
        statement.append(" ORDER BY raised_at DESC, id DESC LIMIT \(fetch)")
        let query = statement.query
        let alarms = try await database.transaction(.read) { session in
            try session.rows(query).map(Self.alarm)
        }
        return RuleRows.page(alarms, limit: limit) { (RuleRows.milliseconds($0.raisedAt), $0.id) }
    }

    public func history(alarmID: String, tenantID: String) async throws -> [AlarmHistoryEntry] {
        guard RuleRows.storable(alarmID, tenantID) else { return [] }
        return try await database.transaction(.read) { session in
            try session.rows(
                """
                SELECT h.document FROM alarm_history h JOIN alarms a ON a.id = h.alarm_id
                WHERE h.alarm_id = \(alarmID) AND a.tenant_id = \(tenantID) ORDER BY h.sequence
                """
            ).map { try RuleRows.decode(AlarmHistoryEntry.self, try $0.value("document"), what: "alarm history entry") }
        }
    }

    public func openAlarms() async throws -> [Alarm] {
        try await database.transaction(.read) { session in
            try session.rows("SELECT document FROM alarms WHERE status <> 'cleared' ORDER BY id").map(Self.alarm)
        }
    }
}
