import Foundation
import GRDB
import MeridianCore

/// Alarms and their history in the embedded SQLite database, `meridian.sqlite` (the registry's
/// file; the `rules` migration component).
///
/// Alarms are written at rule-firing rate (hundreds a second in a storm), so the file is synced
/// at WAL checkpoints rather than at every commit (`synchronous = NORMAL`, as presence): a
/// crash of the process loses nothing, a power failure at most the last moments' changes —
/// never the file.
public final class SQLiteAlarmStore: AlarmStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue

    /// Opens the alarms in the database at `path` — normally the registry's, which the registry
    /// opened first (WAL) — creating the rule tables if needed.
    ///
    /// - Throws: ``OpenError`` when the file is refused (corrupt, or rules from a newer
    ///   Meridian).
    public init(path: String) throws {
        do {
            database = try RuleSchema.sqliteMigrations.open(path: path, label: "meridian.alarms", synchronous: "NORMAL")
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    private init(database: DatabaseQueue) {
        self.database = database
    }

    /// A store in memory (tests): gone when released.
    public static func inMemory() throws -> SQLiteAlarmStore {
        let database = try DatabaseQueue()
        try RuleSchema.sqliteMigrations.migrate(database, path: ":memory:")
        return SQLiteAlarmStore(database: database)
    }

    private static func alarm(_ row: Row) throws -> Alarm {
        try RuleRows.decode(Alarm.self, row["document"], what: "alarm")
    }

    public func save(_ change: AlarmChange) async throws {
        let alarm = change.alarm
        let document = try RuleRows.document(alarm)
        let entry = try RuleRows.document(AlarmHistoryEntry(change))
        let at = RuleRows.milliseconds(change.at)
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO alarms (id, tenant_id, rule_id, device_id, status, severity, raised_at, document)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, rule_id = excluded.rule_id,
                    device_id = excluded.device_id, status = excluded.status, severity = excluded.severity,
                    raised_at = excluded.raised_at, document = excluded.document
                    """,
                arguments: [
                    alarm.id, alarm.tenantID, alarm.ruleID, alarm.deviceID, alarm.status.rawValue,
                    alarm.severity.rawValue,
                    RuleRows.milliseconds(alarm.raisedAt), document,
                ]
            )
            try db.execute(
                sql: """
                    INSERT INTO alarm_history (alarm_id, sequence, at, document)
                    SELECT ?, COALESCE(MAX(sequence), 0) + 1, ?, ? FROM alarm_history WHERE alarm_id = ?
                    """,
                arguments: [alarm.id, at, entry, alarm.id]
            )
        }
    }

    public func alarm(id: String, tenantID: String) async throws -> Alarm? {
        try await database.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT document FROM alarms WHERE id = ? AND tenant_id = ?",
                arguments: [id, tenantID]
            )
            .map(Self.alarm)
        }
    }

    public func alarms(_ filter: AlarmFilter, limit: Int, cursor: String?) async throws -> Page<Alarm> {
        if filter.statuses?.isEmpty == true || filter.severities?.isEmpty == true {
            return Page(items: [], nextCursor: nil)
        }
        var sql = "SELECT document FROM alarms WHERE tenant_id = ?"
        var arguments: [(any DatabaseValueConvertible)?] = [filter.tenantID]
        if let statuses = filter.statuses?.map(\.rawValue).sorted() {
            sql += " AND status IN (\(Array(repeating: "?", count: statuses.count).joined(separator: ", ")))"
            arguments += statuses as [(any DatabaseValueConvertible)?]
            // Lets the open-alarms index serve a list of open alarms.
            if !statuses.contains(AlarmStatus.cleared.rawValue) { sql += " AND status <> 'cleared'" }
        }
        if let severities = filter.severities?.map(\.rawValue).sorted() {
            sql += " AND severity IN (\(Array(repeating: "?", count: severities.count).joined(separator: ", ")))"
            arguments += severities as [(any DatabaseValueConvertible)?]
        }
        if let deviceID = filter.deviceID {
            sql += " AND device_id = ?"
            arguments.append(deviceID)
        }
        if let ruleID = filter.ruleID {
            sql += " AND rule_id = ?"
            arguments.append(ruleID)
        }
        if let from = filter.raisedFrom {
            sql += " AND raised_at >= ?"
            arguments.append(RuleRows.milliseconds(from))
        }
        if let before = filter.raisedBefore {
            sql += " AND raised_at < ?"
            arguments.append(RuleRows.milliseconds(before))
        }
        if let bound = cursor.flatMap(RuleListCursor.parse) {
            sql += " AND (raised_at, id) < (?, ?)"
            arguments += [bound.milliseconds, bound.id] as [(any DatabaseValueConvertible)?]
        }
        sql += " ORDER BY raised_at DESC, id DESC LIMIT ?"
        arguments.append(max(limit, 0) + 1)
        let statement = sql
        let values = StatementArguments(arguments)
        let alarms = try await database.read { db in
            try Row.fetchAll(db, sql: statement, arguments: values).map(Self.alarm)
        }
        return RuleRows.page(alarms, limit: limit) { (RuleRows.milliseconds($0.raisedAt), $0.id) }
    }

    public func history(alarmID: String, tenantID: String) async throws -> [AlarmHistoryEntry] {
        try await database.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT h.document FROM alarm_history h JOIN alarms a ON a.id = h.alarm_id
                    WHERE h.alarm_id = ? AND a.tenant_id = ? ORDER BY h.sequence
                    """,
                arguments: [alarmID, tenantID]
            ).map { try RuleRows.decode(AlarmHistoryEntry.self, $0, what: "alarm history entry") }
        }
    }

    public func openAlarms() async throws -> [Alarm] {
        // Through the open-alarms index: without statistics SQLite would rather scan every
        // alarm ever raised in id order than sort the few open ones.
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT document FROM alarms INDEXED BY alarms_open WHERE status <> 'cleared' ORDER BY id"
            )
            .map(Self.alarm)
        }
    }
}
