import Foundation
import MeridianCore

/// The `webhook_dead_letters` table, in SQLite (inside `meridian.sqlite`) and in PostgreSQL,
/// migration `webhook-dead-letters-v1` of component `webhooks` in both. Times are milliseconds
/// since 1970. `secret` is kept to sign a replay; it is never logged or shown by the API.
enum WebhookDeadLetterSchema {
    static let sqliteV1 = """
        CREATE TABLE webhook_dead_letters (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            rule_id TEXT,
            device_id TEXT,
            firing_id TEXT,
            delivery_id TEXT NOT NULL,
            url TEXT NOT NULL,
            body TEXT NOT NULL,
            secret TEXT,
            timeout_ms INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT NOT NULL,
            last_status INTEGER,
            first_attempt_at INTEGER NOT NULL,
            last_attempt_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            replays INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX webhook_dead_letters_tenant ON webhook_dead_letters(tenant_id, created_at, id);
        CREATE INDEX webhook_dead_letters_rule ON webhook_dead_letters(tenant_id, rule_id, created_at, id);
        """

    static let postgres = PostgresMigrations(
        component: "webhooks",
        steps: [
            .init(
                "webhook-dead-letters-v1",
                [
                    """
                    CREATE TABLE webhook_dead_letters (
                        id TEXT COLLATE "C" PRIMARY KEY,
                        tenant_id TEXT COLLATE "C" NOT NULL,
                        rule_id TEXT COLLATE "C",
                        device_id TEXT COLLATE "C",
                        firing_id TEXT COLLATE "C",
                        delivery_id TEXT COLLATE "C" NOT NULL,
                        url TEXT NOT NULL,
                        body TEXT NOT NULL,
                        secret TEXT,
                        timeout_ms BIGINT NOT NULL,
                        max_attempts INTEGER NOT NULL,
                        attempts INTEGER NOT NULL,
                        last_error TEXT NOT NULL,
                        last_status INTEGER,
                        first_attempt_at BIGINT NOT NULL,
                        last_attempt_at BIGINT NOT NULL,
                        created_at BIGINT NOT NULL,
                        replays INTEGER NOT NULL
                    )
                    """,
                    "CREATE INDEX webhook_dead_letters_tenant ON webhook_dead_letters(tenant_id, created_at, id)",
                    "CREATE INDEX webhook_dead_letters_rule ON webhook_dead_letters(tenant_id, rule_id, created_at, id)",
                ]
            )
        ]
    )
}

/// Converting between ``WebhookDeadLetter`` and its columns, shared by both stores.
enum WebhookDeadLetterColumns {
    static func milliseconds(_ date: Date) -> Int64 {
        WebhookDeadLetterCursor.milliseconds(date)
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// Text a store can keep (PostgreSQL refuses NUL bytes); ids with one match nothing.
    static func storable(_ value: String?) -> Bool {
        !(value?.utf8.contains(0) ?? false)
    }
}
