/// The registry's tables. Times are milliseconds since 1970 (INTEGER).
enum RegistrySchema {
    static let v1 = """
        CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE TABLE memberships (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            PRIMARY KEY (user_id, tenant_id)
        ) WITHOUT ROWID;
        CREATE INDEX memberships_tenant ON memberships(tenant_id);
        CREATE TABLE refresh_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            revoked_at INTEGER
        ) WITHOUT ROWID;
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER,
            last_used_at INTEGER,
            revoked_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
        CREATE TABLE profiles (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            transport TEXT NOT NULL,
            provisioning_mode TEXT NOT NULL,
            provisioning_key TEXT UNIQUE,
            provisioning_secret_hash TEXT,
            created_at INTEGER NOT NULL,
            UNIQUE (tenant_id, name)
        ) WITHOUT ROWID;
        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            name TEXT NOT NULL,
            profile_id TEXT REFERENCES profiles(id),
            labels TEXT NOT NULL,
            metadata TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            last_seen_at INTEGER,
            status TEXT NOT NULL,
            UNIQUE (tenant_id, name)
        );
        CREATE UNIQUE INDEX devices_tenant_id ON devices(tenant_id, id);
        CREATE INDEX devices_profile ON devices(profile_id);
        CREATE TABLE device_labels (
            device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (device_id, key)
        ) WITHOUT ROWID;
        CREATE INDEX device_labels_lookup ON device_labels(tenant_id, key, value, device_id);
        CREATE TABLE credentials (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER,
            revoked_at INTEGER,
            token_hash TEXT UNIQUE,
            username TEXT,
            password_hash TEXT,
            certificate_fingerprint TEXT UNIQUE,
            certificate_pem TEXT,
            certificate_common_name TEXT
        ) WITHOUT ROWID;
        CREATE INDEX credentials_device ON credentials(device_id);
        CREATE UNIQUE INDEX credentials_username ON credentials(username) WHERE username IS NOT NULL AND revoked_at IS NULL;
        CREATE TABLE certificate_authorities (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            certificate_pem TEXT NOT NULL,
            private_key_pem TEXT,
            fingerprint TEXT NOT NULL,
            subject TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            UNIQUE (tenant_id, fingerprint)
        ) WITHOUT ROWID;
        CREATE TABLE claim_codes (
            device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
            code_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE audit_log (
            sequence INTEGER PRIMARY KEY,
            timestamp_ms INTEGER NOT NULL,
            tenant_id TEXT,
            actor_kind TEXT NOT NULL,
            actor_id TEXT NOT NULL,
            actor_remote_address TEXT,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL,
            previous_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_log_tenant ON audit_log(tenant_id, sequence);
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """
}
