import Foundation
import GRDB
import MeridianCore

/// The registry's tables (tenants, users, API keys, profiles, devices, credentials, CAs, claim
/// codes, audit log) in an embedded SQLite database (WAL mode, `synchronous=FULL`): in a data
/// directory, `<data-dir>/meridian.sqlite`, apart from the broker's `broker.sqlite`.
public final class SQLiteRegistryStore: RegistryStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue
    /// Where the database lives (`:memory:` for ``inMemory()``).
    public let path: String

    /// Opens (creating if needed) the registry database at `path` and migrates it.
    ///
    /// - Throws: ``OpenError`` when the file is not a database, is corrupt, or was written by a
    ///   newer version of Meridian; the file is left untouched then.
    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.journalMode = .default
        configuration.busyMode = .timeout(10)
        configuration.label = "meridian.registry"
        configuration.foreignKeysEnabled = true
        let database: DatabaseQueue
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            let check = try database.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check(1)") }
            guard check == "ok" else {
                throw OpenError(description: "\(path) failed its integrity check (\(check ?? "no answer")); it was left untouched — restore a backup or move it away")
            }
        } catch let error as OpenError {
            throw error
        } catch {
            throw OpenError(description: "\(path) cannot be opened as a Meridian registry database: \(error); it was left untouched — restore a backup or move it away")
        }
        try Self.prepare(database, path: path, wal: true)
        self.database = database
    }

    private init(database: DatabaseQueue, path: String) {
        self.database = database
        self.path = path
    }

    /// A store in memory (tests, tools): gone when released.
    public static func inMemory() throws -> SQLiteRegistryStore {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.label = "meridian.registry.memory"
        let database = try DatabaseQueue(configuration: configuration)
        try prepare(database, path: ":memory:", wal: false)
        return SQLiteRegistryStore(database: database, path: ":memory:")
    }

    private static func prepare(_ database: DatabaseQueue, path: String, wal: Bool) throws {
        let migrator = Self.migrator
        let superseded = try database.read { db in try migrator.hasBeenSuperseded(db) }
        if superseded {
            let applied = try database.read { db in try migrator.appliedIdentifiers(db) }
            let unknown = applied.subtracting(migrator.migrations).sorted()
            throw OpenError(
                description: "\(path) was written by a newer version of Meridian (schema \(unknown.joined(separator: ", "))); refusing to start — run that version or restore a backup"
            )
        }
        if wal {
            try database.writeWithoutTransaction { db in
                let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                guard mode == "wal" else {
                    throw OpenError(description: "\(path): could not switch to write-ahead logging (journal mode \(mode ?? "unknown"))")
                }
                // Registry changes are rare and must survive a crash once acknowledged.
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
        }
        try migrator.migrate(database)
    }

    /// The schema, as named, append-only migrations.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("registry-v1") { db in
            try db.execute(sql: RegistrySchema.v1)
        }
        return migrator
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction) throws -> T) async throws -> T {
        try await database.read { db in try body(SQLiteRegistryTransaction(db)) }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction) throws -> T) async throws -> T {
        try await database.write { db in try body(SQLiteRegistryTransaction(db)) }
    }

    /// Runs raw SQL (tests and repair tools; bypasses the registry and its audit log).
    public func unsafeExecute(sql: String) async throws {
        try await database.write { db in try db.execute(sql: sql) }
    }
}
