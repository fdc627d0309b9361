/// The time-series engine's tables on PostgreSQL (component `telemetry`): the same tables and
/// indexes as ``SQLiteChunkStore``'s, prefixed `ts_`. Blobs (chunks, rollup chunks, head
/// snapshots) are `BYTEA`; times are milliseconds since 1970 (`BIGINT`). Latest numbers are
/// kept as their 64-bit pattern (`bits`), so -0 and NaN payloads survive; latest strings as
/// their UTF-8 bytes, since PostgreSQL text cannot hold NUL.
enum PostgresTimeSeriesSchema {
    static let migrations = PostgresMigrations(
        component: "telemetry",
        steps: [.init("telemetry-v1", v1)]
    )

    /// The store's tables (``PostgresChunkStore/sizeOnDisk()`` adds up their sizes).
    static let tables = ["ts_series", "ts_chunks", "ts_rollups", "ts_heads", "ts_latest", "ts_retention"]

    static let v1: [String] = [
        """
        CREATE TABLE ts_series (
            id BIGINT PRIMARY KEY,
            tenant_id TEXT COLLATE "C" NOT NULL,
            device_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            type SMALLINT NOT NULL,
            sealed_end BIGINT
        )
        """,
        "CREATE UNIQUE INDEX ts_series_device ON ts_series(device_id, key, type)",
        """
        CREATE TABLE ts_chunks (
            series_id BIGINT NOT NULL,
            start_ts BIGINT NOT NULL,
            end_ts BIGINT NOT NULL,
            sample_count BIGINT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (series_id, start_ts)
        )
        """,
        """
        CREATE TABLE ts_rollups (
            series_id BIGINT NOT NULL,
            tier SMALLINT NOT NULL,
            period BIGINT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (series_id, tier, period)
        )
        """,
        """
        CREATE TABLE ts_heads (
            series_id BIGINT PRIMARY KEY,
            data BYTEA NOT NULL
        )
        """,
        """
        CREATE TABLE ts_latest (
            device_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            ts BIGINT NOT NULL,
            type SMALLINT NOT NULL,
            bits BIGINT,
            text_value BYTEA,
            PRIMARY KEY (device_id, key)
        )
        """,
        """
        CREATE TABLE ts_retention (
            scope TEXT COLLATE "C" NOT NULL,
            scope_id TEXT COLLATE "C" NOT NULL,
            raw_ms BIGINT,
            minute_ms BIGINT,
            hour_ms BIGINT,
            PRIMARY KEY (scope, scope_id)
        )
        """,
    ]
}
