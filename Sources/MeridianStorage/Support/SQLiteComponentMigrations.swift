import Foundation
import GRDB

/// Named, append-only migrations of one component that shares a SQLite file with another store
/// (presence in the registry's `meridian.sqlite`), recorded in `meridian_migrations`
/// (component, identifier) as ``PostgresMigrations`` does in PostgreSQL — apart from GRDB's
/// `grdb_migrations`, which belongs to the file's owner (whose migrator refuses identifiers it
/// does not know).
struct SQLiteComponentMigrations {
    struct Step {
        var identifier: String
        var sql: String
    }

    var component: String
    var steps: [Step]

    /// Opens the shared file at `path` (checked as ``SQLiteFile/open(path:label:what:foreignKeys:)``
    /// does; `:memory:` for tests), switches it to WAL with the given `synchronous` level, and
    /// migrates this component.
    ///
    /// - Throws: ``SQLiteFile/Refusal`` when the file is refused (corrupt, or this component's
    ///   tables written by a newer Meridian).
    func open(path: String, label: String, synchronous: String) throws -> DatabaseQueue {
        let database = try SQLiteFile.open(path: path, label: label, what: "registry")
        if path != ":memory:" {
            try database.writeWithoutTransaction { db in
                _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            }
        }
        try migrate(database, path: path)
        return database
    }

    /// Applies the missing steps in one transaction; refuses (changing nothing) a database with
    /// steps of this component it does not know.
    func migrate(_ database: DatabaseQueue, path: String) throws {
        try database.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS meridian_migrations (
                        component TEXT NOT NULL,
                        identifier TEXT NOT NULL,
                        applied_at INTEGER NOT NULL,
                        PRIMARY KEY (component, identifier)
                    ) WITHOUT ROWID
                    """
            )
            let applied = try String.fetchAll(db, sql: "SELECT identifier FROM meridian_migrations WHERE component = ?", arguments: [component])
            let unknown = Set(applied).subtracting(steps.map(\.identifier)).sorted()
            guard unknown.isEmpty else {
                throw SQLiteFile.Refusal(
                    description: "\(path) was written by a newer version of Meridian (schema \(unknown.joined(separator: ", "))); refusing to start — run that version or restore a backup"
                )
            }
            let done = Set(applied)
            for step in steps where !done.contains(step.identifier) {
                try db.execute(sql: step.sql)
                try db.execute(
                    sql: "INSERT INTO meridian_migrations (component, identifier, applied_at) VALUES (?, ?, ?)",
                    arguments: [component, step.identifier, Int64((Date().timeIntervalSince1970 * 1000).rounded())]
                )
            }
        }
    }
}
