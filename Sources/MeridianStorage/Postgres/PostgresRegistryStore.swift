import Foundation
import MeridianCore

/// The registry's tables (tenants, users, API keys, profiles, devices, credentials, CAs, claim
/// codes, audit log) in PostgreSQL, for deployments that outgrow one machine: the same
/// behaviour as ``SQLiteRegistryStore`` (one conformance suite runs against both).
///
/// Writes are serialized as in SQLite — the audit log's hash chain needs each write to see the
/// previous one's last entry — by a transaction-level advisory lock that every registry write
/// takes first (`pg_advisory_xact_lock`), so this holds across several Meridian processes
/// sharing the database too. Reads run in `REPEATABLE READ READ ONLY` transactions: one
/// snapshot per body, never blocked by the writer.
public final class PostgresRegistryStore: RegistryStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The advisory lock registry writers hold ("REGISTRY" in ASCII).
    static let writeLock: Int64 = 0x5245_4749_5354_5259

    /// The database the store lives in (shared with other stores).
    public let database: PostgresDatabase

    /// Opens the registry in `database` (whose pool must be running: ``PostgresDatabase/run()``)
    /// and migrates it.
    ///
    /// - Throws: ``OpenError`` when the server cannot be reached or refuses the credentials,
    ///   when the database was migrated by a newer version of Meridian (it is left untouched
    ///   then), or when a migration fails.
    public init(database: PostgresDatabase) async throws {
        self.database = database
        do {
            try await database.checkConnection()
            try await database.migrate(PostgresRegistrySchema.migrations)
        } catch let error as PostgresDatabase.DatabaseError {
            throw OpenError(description: error.description)
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction) throws -> T) async throws -> T {
        try await database.transaction(.read) { session in try body(PostgresRegistryTransaction(session: session)) }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any RegistryTransaction) throws -> T) async throws -> T
    {
        try await database.transaction(.write(lock: Self.writeLock)) { session in
            try body(PostgresRegistryTransaction(session: session))
        }
    }

    /// Runs raw SQL (tests and repair tools; bypasses the registry and its audit log).
    public func unsafeExecute(sql: String) async throws {
        try await database.unsafeExecute(sql: sql)
    }
}
