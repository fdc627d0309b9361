/// The registry's tables on PostgreSQL: the same tables, columns and constraints as the SQLite
/// schema (``RegistrySchema``). Times are milliseconds since 1970 (BIGINT). Every text column
/// compares and sorts byte-wise (`COLLATE "C"`), as SQLite's do, so that ids page in the same
/// order and cursors mean the same on both backends whatever the server's locale.
enum PostgresRegistrySchema {
    static let migrations = PostgresMigrations(
        component: "registry",
        steps: [.init("registry-v1", v1)]
    )

    static let v1: [String] = [
        """
        CREATE TABLE tenants (
            id TEXT COLLATE "C" PRIMARY KEY,
            name TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE users (
            id TEXT COLLATE "C" PRIMARY KEY,
            username TEXT COLLATE "C" NOT NULL UNIQUE,
            password_hash TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL,
            disabled BOOLEAN NOT NULL DEFAULT FALSE
        )
        """,
        """
        CREATE TABLE memberships (
            user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            role TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (user_id, tenant_id)
        )
        """,
        "CREATE INDEX memberships_tenant ON memberships(tenant_id)",
        """
        CREATE TABLE refresh_tokens (
            token_hash TEXT COLLATE "C" PRIMARY KEY,
            user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            revoked_at BIGINT
        )
        """,
        """
        CREATE TABLE api_keys (
            id TEXT COLLATE "C" PRIMARY KEY,
            tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name TEXT COLLATE "C" NOT NULL,
            role TEXT COLLATE "C" NOT NULL,
            key_hash TEXT COLLATE "C" NOT NULL UNIQUE,
            prefix TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            last_used_at BIGINT,
            revoked_at BIGINT
        )
        """,
        "CREATE INDEX api_keys_tenant ON api_keys(tenant_id)",
        """
        CREATE TABLE profiles (
            id TEXT COLLATE "C" PRIMARY KEY,
            tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name TEXT COLLATE "C" NOT NULL,
            description TEXT COLLATE "C" NOT NULL,
            transport TEXT COLLATE "C" NOT NULL,
            provisioning_mode TEXT COLLATE "C" NOT NULL,
            provisioning_key TEXT COLLATE "C" UNIQUE,
            provisioning_secret_hash TEXT COLLATE "C",
            created_at BIGINT NOT NULL,
            UNIQUE (tenant_id, name)
        )
        """,
        """
        CREATE TABLE devices (
            id TEXT COLLATE "C" PRIMARY KEY,
            tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
            name TEXT COLLATE "C" NOT NULL,
            profile_id TEXT COLLATE "C" REFERENCES profiles(id),
            labels TEXT COLLATE "C" NOT NULL,
            metadata TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL,
            last_seen_at BIGINT,
            status TEXT COLLATE "C" NOT NULL,
            UNIQUE (tenant_id, name)
        )
        """,
        "CREATE UNIQUE INDEX devices_tenant_id ON devices(tenant_id, id)",
        "CREATE INDEX devices_profile ON devices(profile_id)",
        """
        CREATE TABLE device_labels (
            device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            tenant_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            value TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (device_id, key)
        )
        """,
        "CREATE INDEX device_labels_lookup ON device_labels(tenant_id, key, value, device_id)",
        """
        CREATE TABLE credentials (
            id TEXT COLLATE "C" PRIMARY KEY,
            tenant_id TEXT COLLATE "C" NOT NULL,
            device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            type TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            revoked_at BIGINT,
            token_hash TEXT COLLATE "C" UNIQUE,
            username TEXT COLLATE "C",
            password_hash TEXT COLLATE "C",
            certificate_fingerprint TEXT COLLATE "C" UNIQUE,
            certificate_pem TEXT COLLATE "C",
            certificate_common_name TEXT COLLATE "C"
        )
        """,
        "CREATE INDEX credentials_device ON credentials(device_id)",
        "CREATE UNIQUE INDEX credentials_username ON credentials(username) WHERE username IS NOT NULL AND revoked_at IS NULL",
        """
        CREATE TABLE certificate_authorities (
            id TEXT COLLATE "C" PRIMARY KEY,
            tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            kind TEXT COLLATE "C" NOT NULL,
            certificate_pem TEXT COLLATE "C" NOT NULL,
            private_key_pem TEXT COLLATE "C",
            fingerprint TEXT COLLATE "C" NOT NULL,
            subject TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL,
            UNIQUE (tenant_id, fingerprint)
        )
        """,
        """
        CREATE TABLE claim_codes (
            device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
            code_hash TEXT COLLATE "C" NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE audit_log (
            sequence BIGINT PRIMARY KEY,
            timestamp_ms BIGINT NOT NULL,
            tenant_id TEXT COLLATE "C",
            actor_kind TEXT COLLATE "C" NOT NULL,
            actor_id TEXT COLLATE "C" NOT NULL,
            actor_remote_address TEXT COLLATE "C",
            action TEXT COLLATE "C" NOT NULL,
            target TEXT COLLATE "C" NOT NULL,
            details TEXT COLLATE "C" NOT NULL,
            previous_hash TEXT COLLATE "C" NOT NULL,
            hash TEXT COLLATE "C" NOT NULL
        )
        """,
        "CREATE INDEX audit_log_tenant ON audit_log(tenant_id, sequence)",
        """
        CREATE FUNCTION meridian_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only';
        END
        $$
        """,
        """
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION meridian_audit_log_append_only()
        """,
        // TRUNCATE skips row triggers.
        """
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION meridian_audit_log_append_only()
        """,
    ]
}
