import Foundation
import PostgresNIO

/// A store's schema as named, append-only migrations (as GRDB's `DatabaseMigrator` does for the
/// SQLite stores): each step runs once and is recorded in
/// `meridian_migrations` under the store's component name, so several stores can share one
/// database (`registry-v1`, later `telemetry-v1`).
///
/// A database with steps of the component this Meridian does not know was migrated by a newer
/// version: it is refused, untouched.
public struct PostgresMigrations: Sendable {
    /// One step: its identifier and its statements (run one by one, in order).
    public struct Step: Sendable {
        public var identifier: String
        public var statements: [String]

        public init(_ identifier: String, _ statements: [String]) {
            self.identifier = identifier
            self.statements = statements
        }
    }

    /// The store's name in `meridian_migrations` (`registry`).
    public var component: String
    /// The steps, oldest first; never edit or remove one that was released, only append.
    public var steps: [Step]

    public init(component: String, steps: [Step]) {
        self.component = component
        self.steps = steps
    }

    /// Serializes concurrent migrations of the same database (several servers starting at once).
    static let lock: Int64 = 0x4D45_5249_4449_414E  // "MERIDIAN"
}

extension PostgresDatabase {
    /// Applies the steps of `migrations` that the database lacks, all in one transaction
    /// (PostgreSQL's DDL is transactional): all of them or, when one fails, none.
    ///
    /// - Throws: ``DatabaseError`` when the database holds steps of this component that
    ///   `migrations` does not know (a newer Meridian wrote it; nothing is changed then), when it
    ///   is not UTF-8 encoded, or when a step fails.
    public func migrate(_ migrations: PostgresMigrations) async throws {
        let component = migrations.component
        let known = migrations.steps.map(\.identifier)
        let where_ = configuration.redactedURL
        // Every step under the migration lock, so that two servers starting at once do not both
        // apply a step; the check for unknown steps runs under it too.
        let newlyApplied = try await transaction(.write(lock: PostgresMigrations.lock)) { session -> [String] in
            let encoding = try session.row("SHOW server_encoding").map {
                try $0.value("server_encoding", as: String.self)
            }
            guard encoding == "UTF8" else {
                throw PostgresDatabase.DatabaseError(
                    "\(where_): the database's encoding is \(encoding ?? "unknown"); Meridian needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
                )
            }
            try session.execute(
                """
                CREATE TABLE IF NOT EXISTS meridian_migrations (
                    component TEXT COLLATE "C" NOT NULL,
                    identifier TEXT COLLATE "C" NOT NULL,
                    applied_at BIGINT NOT NULL,
                    PRIMARY KEY (component, identifier)
                )
                """
            )
            let applied = try session.rows("SELECT identifier FROM meridian_migrations WHERE component = \(component)")
                .map { try $0.value("identifier", as: String.self) }
            let unknown = Set(applied).subtracting(known).sorted()
            guard unknown.isEmpty else {
                throw PostgresDatabase.DatabaseError(
                    "\(where_) was written by a newer version of Meridian (schema \(unknown.joined(separator: ", "))); refusing to start — run that version or restore a backup"
                )
            }
            let done = Set(applied)
            var appliedNow: [String] = []
            for step in migrations.steps where !done.contains(step.identifier) {
                for statement in step.statements {
                    do {
                        try session.execute(PostgresQuery(unsafeSQL: statement))
                    } catch let error as PostgresDatabase.DatabaseError {
                        throw PostgresDatabase.DatabaseError(
                            "\(where_): migration \(component)/\(step.identifier) failed: \(error.description)",
                            sqlState: error.sqlState
                        )
                    }
                }
                let now = Int64((Date().timeIntervalSince1970 * 1000).rounded())
                try session.execute(
                    "INSERT INTO meridian_migrations (component, identifier, applied_at) VALUES (\(component), \(step.identifier), \(now))"
                )
                appliedNow.append(step.identifier)
            }
            return appliedNow
        }
        for identifier in newlyApplied {
            logger.info(
                "applied database migration",
                metadata: ["migration.component": "\(component)", "migration.identifier": "\(identifier)"]
            )
        }
    }

    /// The identifiers of `component`'s applied steps (tests, diagnostics).
    public func appliedMigrations(component: String) async throws -> [String] {
        try await transaction(.read) { session in
            let exists = try session.row("SELECT to_regclass('meridian_migrations') IS NOT NULL AS present")
            guard try exists?.value("present", as: Bool.self) == true else { return [] }
            return try session.rows(
                "SELECT identifier FROM meridian_migrations WHERE component = \(component) ORDER BY applied_at, identifier"
            )
            .map { try $0.value("identifier", as: String.self) }
        }
    }
}
