import Foundation
import GRDB
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import NIOFoundationCompat
import Synchronization

/// The broker's durable state in an embedded SQLite database (WAL mode).
///
/// `strict` durability commits with `synchronous=FULL` (the WAL is fsynced at every commit);
/// `batch` commits with `synchronous=NORMAL` (writes reach the operating system at once, and
/// ``sync()`` checkpoints — and so fsyncs — on the broker's sync interval).
public final class SQLiteSessionStore: MQTTSessionStore, Sendable {
    /// Why the store could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    private let database: DatabaseQueue
    private let path: String
    private let purgeCursor = Mutex<Int64>(0)

    /// Opens (creating if needed) the store at `path` and migrates it to the current schema.
    ///
    /// - Throws: ``OpenError`` when the file is not a database, is corrupt, or was written by a
    ///   newer version of Meridian; the file is never replaced or modified in that case.
    public init(path: String, durability: Durability) throws {
        self.path = path
        do {
            let database = try SQLiteFile.open(path: path, label: "meridian.broker-state", what: "broker")
            try SQLiteFile.prepare(database, path: path, migrator: Self.migrator, synchronous: durability == .strict ? "FULL" : "NORMAL")
            self.database = database
        } catch let refusal as SQLiteFile.Refusal {
            throw OpenError(description: refusal.description)
        }
    }

    /// The schema, as named, append-only migrations.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("broker-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE mqtt_messages (
                        id INTEGER PRIMARY KEY,
                        topic TEXT NOT NULL,
                        payload BLOB NOT NULL,
                        qos INTEGER NOT NULL,
                        retain INTEGER NOT NULL,
                        properties BLOB,
                        origin TEXT NOT NULL,
                        expires_at INTEGER
                    );
                    CREATE TABLE mqtt_sessions (
                        id INTEGER PRIMARY KEY,
                        client_id TEXT NOT NULL,
                        username TEXT,
                        attributes TEXT,
                        expiry_interval INTEGER NOT NULL,
                        disconnected_at INTEGER,
                        will_message_id INTEGER,
                        will_delay INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE INDEX mqtt_sessions_client ON mqtt_sessions(client_id);
                    CREATE TABLE mqtt_subscriptions (
                        session_id INTEGER NOT NULL,
                        filter TEXT NOT NULL,
                        options INTEGER NOT NULL,
                        identifier INTEGER,
                        PRIMARY KEY (session_id, filter)
                    ) WITHOUT ROWID;
                    CREATE TABLE mqtt_deliveries (
                        session_id INTEGER NOT NULL,
                        sequence INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        qos INTEGER NOT NULL,
                        retain INTEGER NOT NULL,
                        identifiers TEXT,
                        packet_id INTEGER,
                        phase INTEGER NOT NULL,
                        PRIMARY KEY (session_id, sequence)
                    ) WITHOUT ROWID;
                    CREATE INDEX mqtt_deliveries_message ON mqtt_deliveries(message_id);
                    CREATE TABLE mqtt_inbound (
                        session_id INTEGER NOT NULL,
                        packet_id INTEGER NOT NULL,
                        PRIMARY KEY (session_id, packet_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE mqtt_retained (
                        topic TEXT PRIMARY KEY,
                        message_id INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX mqtt_retained_message ON mqtt_retained(message_id);
                    """
            )
        }
        // Topic mapping: a subscription remembers the rewrite its filter went through, so a
        // restored session names messages the way its client subscribed to them.
        migrator.registerMigration("broker-v2") { db in
            try db.execute(sql: "ALTER TABLE mqtt_subscriptions ADD COLUMN rewrite_external TEXT")
            try db.execute(sql: "ALTER TABLE mqtt_subscriptions ADD COLUMN rewrite_internal TEXT")
        }
        return migrator
    }

    // MARK: writing

    public func write(_ operations: [PersistenceOperation]) throws {
        guard !operations.isEmpty else { return }
        try database.write { db in
            for operation in operations {
                try Self.apply(operation, in: db)
            }
        }
    }

    private static func apply(_ operation: PersistenceOperation, in db: Database) throws {
        switch operation {
        case .saveMessage(let message):
            try saveMessage(message, in: db)
        case .addDelivery(let delivery):
            try SQLiteBinding.run(
                db.cachedStatement(
                    sql: "INSERT OR REPLACE INTO mqtt_deliveries (session_id, sequence, message_id, qos, retain, identifiers, packet_id, phase) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                in: db
            ) { row in
                row.bind(delivery.sessionID)
                row.bind(delivery.sequence)
                row.bind(delivery.messageID)
                row.bind(Int(delivery.qos.rawValue))
                row.bind(delivery.retain)
                row.bind(delivery.identifiers.isEmpty ? nil : delivery.identifiers.map(String.init).joined(separator: ","))
                row.bind(delivery.packetIdentifier.map { Int64($0) })
                row.bind(Int(delivery.phase.rawValue))
            }
        case .updateDelivery(let sessionID, let sequence, let packetIdentifier, let phase):
            try SQLiteBinding.run(
                db.cachedStatement(sql: "UPDATE mqtt_deliveries SET packet_id = ?, phase = ? WHERE session_id = ? AND sequence = ?"),
                in: db
            ) { row in
                row.bind(packetIdentifier.map { Int64($0) })
                row.bind(Int(phase.rawValue))
                row.bind(sessionID)
                row.bind(sequence)
            }
        case .removeDelivery(let sessionID, let sequence):
            try SQLiteBinding.run(db.cachedStatement(sql: "DELETE FROM mqtt_deliveries WHERE session_id = ? AND sequence = ?"), in: db) { row in
                row.bind(sessionID)
                row.bind(sequence)
            }
        case .saveSession(let session):
            if let will = session.will { try saveMessage(will, in: db) }
            let attributes = session.attributes.isEmpty ? nil : String(decoding: try JSONEncoder().encode(session.attributes), as: UTF8.self)
            try db.cachedStatement(
                sql: "INSERT OR REPLACE INTO mqtt_sessions (id, client_id, username, attributes, expiry_interval, disconnected_at, will_message_id, will_delay) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ).execute(arguments: [
                session.id, session.clientIdentifier, session.username, attributes, Int64(session.expiryInterval),
                session.disconnectedAt, session.will?.id, Int64(session.willDelay),
            ])
        case .removeSession(let id):
            try db.cachedStatement(sql: "DELETE FROM mqtt_sessions WHERE id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM mqtt_subscriptions WHERE session_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM mqtt_deliveries WHERE session_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM mqtt_inbound WHERE session_id = ?").execute(arguments: [id])
        case .sessionDisconnected(let id, let at):
            try db.cachedStatement(sql: "UPDATE mqtt_sessions SET disconnected_at = ? WHERE id = ?").execute(arguments: [at, id])
        case .addSubscription(let subscription):
            try db.cachedStatement(
                sql: "INSERT OR REPLACE INTO mqtt_subscriptions (session_id, filter, options, identifier, rewrite_external, rewrite_internal) VALUES (?, ?, ?, ?, ?, ?)"
            )
            .execute(arguments: [
                subscription.sessionID, subscription.filter, Int(subscription.options), subscription.identifier,
                subscription.rewrite?.external, subscription.rewrite?.internal,
            ])
        case .removeSubscription(let sessionID, let filter):
            try db.cachedStatement(sql: "DELETE FROM mqtt_subscriptions WHERE session_id = ? AND filter = ?")
                .execute(arguments: [sessionID, filter])
        case .addInbound(let sessionID, let packetIdentifier):
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO mqtt_inbound (session_id, packet_id) VALUES (?, ?)")
                .execute(arguments: [sessionID, Int(packetIdentifier)])
        case .removeInbound(let sessionID, let packetIdentifier):
            try db.cachedStatement(sql: "DELETE FROM mqtt_inbound WHERE session_id = ? AND packet_id = ?")
                .execute(arguments: [sessionID, Int(packetIdentifier)])
        case .setRetained(let topic, let messageID):
            if let messageID {
                try db.cachedStatement(sql: "INSERT OR REPLACE INTO mqtt_retained (topic, message_id) VALUES (?, ?)")
                    .execute(arguments: [topic, messageID])
            } else {
                try db.cachedStatement(sql: "DELETE FROM mqtt_retained WHERE topic = ?").execute(arguments: [topic])
            }
        }
    }

    private static func saveMessage(_ message: PersistedMessage, in db: Database) throws {
        try SQLiteBinding.run(
            db.cachedStatement(
                sql: "INSERT OR IGNORE INTO mqtt_messages (id, topic, payload, qos, retain, properties, origin, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            in: db
        ) { row in
            row.bind(message.id)
            row.bind(message.topic)
            row.bind(message.payload)
            row.bind(Int(message.qos.rawValue))
            row.bind(message.retain)
            row.bind(message.properties, emptyIsNull: true)
            row.bind(message.origin)
            row.bind(message.expiresAt)
        }
    }

    // MARK: maintenance

    public func purge(limit: Int) throws -> Int {
        let cursor = purgeCursor.withLock { $0 }
        return try database.write { db in
            let ids = try Int64.fetchAll(
                db,
                sql: """
                    SELECT m.id FROM mqtt_messages m
                    WHERE m.id > ?
                      AND NOT EXISTS (SELECT 1 FROM mqtt_deliveries d WHERE d.message_id = m.id)
                      AND NOT EXISTS (SELECT 1 FROM mqtt_retained r WHERE r.message_id = m.id)
                      AND NOT EXISTS (SELECT 1 FROM mqtt_sessions s WHERE s.will_message_id = m.id)
                    ORDER BY m.id LIMIT ?
                    """,
                arguments: [cursor, limit]
            )
            for id in ids {
                try db.cachedStatement(sql: "DELETE FROM mqtt_messages WHERE id = ?").execute(arguments: [id])
            }
            // Start over from the beginning once a pass found nothing more.
            purgeCursor.withLock { $0 = ids.count < limit ? 0 : (ids.last ?? 0) }
            return ids.count
        }
    }

    public func sync() throws {
        try database.writeWithoutTransaction { db in
            _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(PASSIVE)")
        }
    }

    public func close() throws {
        try database.close()
    }

    /// The connection's `PRAGMA synchronous` level: 2 (FULL) for strict, 1 (NORMAL) for batch.
    var synchronousLevel: Int {
        get throws { try database.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 } }
    }

    // MARK: recovery

    public func recover() throws -> RecoveredBrokerState {
        try database.read { db in
            var state = RecoveredBrokerState()
            var messages: [Int64: PersistedMessage] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT id, topic, payload, qos, retain, properties, origin, expires_at FROM mqtt_messages")
            while let row = try rows.next() {
                let message = PersistedMessage(
                    id: row[0],
                    topic: row[1],
                    payload: ByteBuffer(data: row[2] as Data),
                    qos: QoS(rawValue: UInt8(clamping: row[3] as Int)) ?? .atLeastOnce,
                    retain: row[4],
                    properties: (row[5] as Data?).map { ByteBuffer(data: $0) } ?? ByteBuffer(),
                    origin: row[6],
                    expiresAt: row[7]
                )
                messages[message.id] = message
            }
            state.messages = messages
            let sessions = try Row.fetchCursor(
                db, sql: "SELECT id, client_id, username, attributes, expiry_interval, disconnected_at, will_message_id, will_delay FROM mqtt_sessions ORDER BY id"
            )
            while let row = try sessions.next() {
                let attributesText: String? = row[3]
                let attributes = attributesText.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
                let willID: Int64? = row[6]
                state.sessions.append(
                    PersistedSession(
                        id: row[0],
                        clientIdentifier: row[1],
                        username: row[2],
                        attributes: attributes,
                        expiryInterval: UInt32(clamping: row[4] as Int64),
                        disconnectedAt: row[5],
                        will: willID.flatMap { messages[$0] },
                        willDelay: UInt32(clamping: row[7] as Int64)
                    )
                )
            }
            let subscriptions = try Row.fetchCursor(
                db, sql: "SELECT session_id, filter, options, identifier, rewrite_external, rewrite_internal FROM mqtt_subscriptions"
            )
            while let row = try subscriptions.next() {
                let external: String? = row[4]
                let internalPrefix: String? = row[5]
                var rewrite: MQTTTopicRewrite?
                if let external, let internalPrefix { rewrite = MQTTTopicRewrite(external: external, internal: internalPrefix) }
                state.subscriptions.append(
                    PersistedSubscription(
                        sessionID: row[0], filter: row[1], options: UInt8(clamping: row[2] as Int), identifier: row[3], rewrite: rewrite
                    )
                )
            }
            let deliveries = try Row.fetchCursor(
                db, sql: "SELECT session_id, sequence, message_id, qos, retain, identifiers, packet_id, phase FROM mqtt_deliveries ORDER BY sequence"
            )
            while let row = try deliveries.next() {
                let identifiers: String? = row[5]
                let packetIdentifier: Int? = row[6]
                state.deliveries.append(
                    PersistedDelivery(
                        sessionID: row[0],
                        sequence: row[1],
                        messageID: row[2],
                        qos: QoS(rawValue: UInt8(clamping: row[3] as Int)) ?? .atLeastOnce,
                        retain: row[4],
                        identifiers: identifiers?.split(separator: ",").compactMap { Int($0) } ?? [],
                        packetIdentifier: packetIdentifier.map { UInt16(clamping: $0) },
                        phase: PersistedDelivery.Phase(rawValue: UInt8(clamping: row[7] as Int)) ?? .queued
                    )
                )
            }
            let inbound = try Row.fetchCursor(db, sql: "SELECT session_id, packet_id FROM mqtt_inbound")
            while let row = try inbound.next() {
                state.inbound.append((sessionID: row[0], packetIdentifier: UInt16(clamping: row[1] as Int)))
            }
            let retained = try Row.fetchCursor(db, sql: "SELECT topic, message_id FROM mqtt_retained")
            while let row = try retained.next() {
                state.retained.append((topic: row[0], messageID: row[1]))
            }
            state.highestMessageID = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM mqtt_messages") ?? 0
            state.highestSequence = try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM mqtt_deliveries") ?? 0
            state.highestSessionID = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM mqtt_sessions") ?? 0
            return state
        }
    }
}

