import GRDB

/// Opening one of Meridian's SQLite files the same careful way: nothing is written to a file
/// that is refused (corrupt, not a database, or from a newer version), and WAL is switched on
/// only after those checks (GRDB's own WAL set-up writes to the file).
enum SQLiteFile {
    /// Why a file was refused; the stores rethrow it as their own `OpenError`.
    struct Refusal: Error {
        var description: String
    }

    /// Opens `path` (creating it if needed) and checks its integrity. `what` names the file in
    /// messages ("broker", "registry").
    static func open(path: String, label: String, what: String, foreignKeys: Bool = false) throws(Refusal) -> DatabaseQueue {
        var configuration = Configuration()
        configuration.journalMode = .default
        configuration.busyMode = .timeout(10)
        configuration.label = label
        configuration.foreignKeysEnabled = foreignKeys
        let untouched = "it was left untouched — restore a backup or move it away"
        let database: DatabaseQueue
        let check: String?
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            check = try database.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check(1)") }
        } catch {
            throw Refusal(description: "\(path) cannot be opened as a Meridian \(what) database: \(error); \(untouched)")
        }
        guard check == "ok" else {
            throw Refusal(description: "\(path) failed its integrity check (\(check ?? "no answer")); \(untouched)")
        }
        return database
    }

    /// Refuses a database that a newer Meridian migrated, then switches to WAL with the given
    /// `synchronous` level (nil: leave the journal alone, e.g. in memory) and migrates.
    static func prepare(_ database: DatabaseQueue, path: String, migrator: DatabaseMigrator, synchronous: String?) throws {
        if try database.read({ db in try migrator.hasBeenSuperseded(db) }) {
            let applied = try database.read { db in try migrator.appliedIdentifiers(db) }
            let unknown = applied.subtracting(migrator.migrations).sorted()
            throw Refusal(
                description: "\(path) was written by a newer version of Meridian (schema \(unknown.joined(separator: ", "))); refusing to start — run that version or restore a backup"
            )
        }
        if let synchronous {
            try database.writeWithoutTransaction { db in
                let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                guard mode == "wal" else {
                    throw Refusal(description: "\(path): could not switch to write-ahead logging (journal mode \(mode ?? "unknown"))")
                }
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            }
        }
        try migrator.migrate(database)
    }
}
