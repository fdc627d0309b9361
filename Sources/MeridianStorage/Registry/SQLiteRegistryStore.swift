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
        do {
            let database = try SQLiteFile.open(path: path, label: "meridian.registry", what: "registry", foreignKeys: true)
            // Registry changes are rare and must survive a crash once acknowledged.
            try SQLiteFile.prepare(database, path: path, migrator: Self.migrator, synchronous: "FULL")
            self.database = database
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
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
        do {
            try SQLiteFile.prepare(database, path: ":memory:", migrator: migrator, synchronous: nil)
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
        return SQLiteRegistryStore(database: database, path: ":memory:")
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
