import Logging
import MeridianCore
import MeridianStorage
import MQTTBroker
import MQTTCore

extension MeridianConfiguration {
    /// The registry: every configuration key, in the order `config show` and the docs list them.
    ///
    /// Keys of the same table are kept together; top-level keys come first. Adding a key here is
    /// all it takes for the config file, `MERIDIAN_*` variables, `--set`, `--help` and
    /// `config show` to know it (add it to `docs/configuration.md` and `meridian.example.toml` too:
    /// tests check both).
    public static let keys: [ConfigurationKey] = [
        .string(
            "data_dir",
            \.dataDirectory,
            flag: "--data-dir",
            help: "Directory for the server's state (database, time series, sessions)."
        ),
        .choice(
            "log_level",
            \.logLevel,
            Logger.Level.allCases.map { (word: $0.rawValue, value: $0) },
            flag: "--log-level",
            help: "Lowest level of log messages written to standard error."
        ),

        // [database]
        .string(
            "database.url",
            \.database.url,
            flag: "--database",
            help: "PostgreSQL URL (postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require|verify-full]) for the registry and telemetry; empty: embedded SQLite in the data directory. Broker sessions and the telemetry WAL stay in the data directory.",
            check: { $0.isEmpty ? nil : PostgresConfiguration.problem(url: $0) },
            redact: { PostgresConfiguration.redact(url: $0) }
        ),

        // [network]
        .string(
            "network.bind",
            \.network.bind,
            flag: "--bind",
            help: "Address the MQTT and HTTP listeners bind to (0.0.0.0 for all IPv4 interfaces, :: for all).",
            check: { $0.isEmpty ? "must not be empty" : $0.contains(" ") ? "must not contain spaces" : nil }
        ),
        .integer(
            "network.mqtt_port",
            \.network.mqttPort,
            range: 0...65535,
            flag: "--mqtt-port",
            help: "TCP port of the MQTT listener; 0 picks a free port."
        ),
        .integer(
            "network.http_port",
            \.network.httpPort,
            range: 0...65535,
            flag: "--http-port",
            help: "TCP port of the HTTP API, dashboard and MQTT over WebSocket; 0 picks a free port."
        ),
        .integer(
            "network.mqtts_port",
            \.network.mqttsPort,
            range: 0...65535,
            flag: "--mqtts-port",
            help: "TCP port of the MQTT over TLS listener (when tls.enabled); 0 picks a free port."
        ),
        .integer(
            "network.https_port",
            \.network.httpsPort,
            range: 0...65535,
            flag: "--https-port",
            help: "TCP port of HTTPS: the HTTP routes and MQTT over secure WebSocket (when tls.enabled); 0 picks a free port."
        ),
        .string(
            "network.websocket_path",
            \.network.webSocketPath,
            help: "HTTP path where MQTT over WebSocket is accepted.",
            check: { path in
                if !path.hasPrefix("/") { return "must start with /" }
                if path.contains(where: { $0 == " " || $0 == "?" || $0 == "#" }) {
                    return "must not contain spaces, ? or #"
                }
                return nil
            }
        ),

        .integer(
            "network.event_loop_threads",
            \.network.eventLoopThreads,
            range: 0...1024,
            help: "Event-loop threads serving connections; 0 = one per CPU core the process may use (CPU affinity and cgroup limits respected)."
        ),

        // [tls]
        .boolean(
            "tls.enabled",
            \.tls.enabled,
            help: "Serve MQTT over TLS (network.mqtts_port) and HTTPS with secure WebSocket (network.https_port)."
        ),
        .string(
            "tls.certificate",
            \.tls.certificate,
            help: "PEM file with the server certificate, intermediates after it; empty: a self-signed one kept in tls/ in the data directory.",
            check: { _ in nil }
        ),
        .string(
            "tls.private_key",
            \.tls.privateKey,
            help: "PEM file with the server certificate's private key; set together with tls.certificate.",
            check: { _ in nil }
        ),
        .string(
            "tls.client_ca",
            \.tls.clientCA,
            help: "PEM file with the certificate authorities that client certificates must chain to.",
            check: { _ in nil }
        ),
        .choice(
            "tls.client_auth",
            \.tls.clientAuthentication,
            MeridianConfiguration.TLS.ClientAuthentication.allCases.map { (word: $0.rawValue, value: $0) },
            help: "none: no client certificates; optional: verified against tls.client_ca when presented; required: every TLS client (MQTT and HTTPS) must present one."
        ),

        // [auth]
        .boolean(
            "auth.allow_anonymous",
            \.auth.allowAnonymous,
            help: "Accept MQTT clients that send no user name, as anonymous clients allowed everything outside the tenants' topics."
        ),
        .choice(
            "auth.certificate_mapping",
            \.auth.certificateMapping,
            CertificateMapping.allCases.map { (word: $0.rawValue, value: $0) },
            help: "How a verified client certificate names its device: fingerprint (registered as a credential) or common-name (the CN is the device id, issued by the device's tenant's CA)."
        ),

        // [api]
        .integer(
            "api.access_token_ttl",
            \.api.accessTokenLifetime,
            range: 60...86_400,
            help: "Seconds an access token from POST /api/v1/auth/login is valid."
        ),
        .integer(
            "api.refresh_token_ttl",
            \.api.refreshTokenLifetime,
            range: 300...31_536_000,
            help: "Seconds a refresh token is valid (each refresh issues a new one)."
        ),
        .integer(
            "api.login_max_failures",
            \.api.loginMaximumFailures,
            range: 1...1000,
            help: "Failed logins per user name, and per client address, within api.login_window before further attempts get 429."
        ),
        .integer(
            "api.login_window",
            \.api.loginWindow,
            range: 1...86_400,
            help: "Seconds over which failed logins are counted."
        ),
        .integer(
            "api.stream_ping_interval",
            \.api.streamPingInterval,
            range: 1...3600,
            help: "Seconds of silence from a live-stream client (/api/v1/stream) before the server sends a WebSocket ping; a client silent for twice as long is closed as gone."
        ),

        // [presence]
        .integer(
            "presence.retention_days",
            \.presence.retentionDays,
            range: 0...36_500,
            help: "Days devices' connect and disconnect events (GET /api/v1/devices/{id}/presence/events) are kept (0: forever)."
        ),

        // [telemetry]
        .integer(
            "telemetry.checkpoint_interval",
            \.telemetry.checkpointInterval,
            range: 1...3600,
            help: "Seconds between telemetry checkpoints: unsealed samples and latest values are copied into the telemetry store and the telemetry WAL is trimmed."
        ),
        .integer(
            "telemetry.chunk_samples",
            \.telemetry.chunkSamples,
            range: 64...16_384,
            help: "Samples per compressed chunk: larger compresses better, smaller keeps less in memory per series."
        ),
        .integer(
            "telemetry.retention_raw_days",
            \.telemetry.retentionRawDays,
            range: 0...36_500,
            help: "Days raw telemetry is kept (0: forever); tenants and device profiles may override it through the API."
        ),
        .integer(
            "telemetry.retention_minute_days",
            \.telemetry.retentionMinuteDays,
            range: 0...36_500,
            help: "Days 1-minute rollups are kept (0: forever)."
        ),
        .integer(
            "telemetry.retention_hour_days",
            \.telemetry.retentionHourDays,
            range: 0...36_500,
            help: "Days 1-hour rollups are kept (0: forever)."
        ),

        // [twin]
        .integer(
            "twin.max_depth",
            \.twin.maxDepth,
            range: 1...32,
            help: "Deepest nesting of objects and arrays in a device twin's desired or reported state; deeper updates are refused."
        ),
        .integer(
            "twin.max_document_bytes",
            \.twin.maxDocumentBytes,
            range: 1024...1_048_576,
            help: "Largest device twin (desired and reported state as JSON) in bytes; updates that would make it larger are refused."
        ),
        .integer(
            "twin.history_retention_days",
            \.twin.historyRetentionDays,
            range: 0...36_500,
            help: "Days every version of a device twin is kept in its history (0: forever); each twin's newest version is always kept."
        ),

        // [commands]
        .integer(
            "commands.rate_per_device",
            \.commands.ratePerDevice,
            range: 0...1_000_000,
            help: "Commands per minute an operator may send to one device (also the burst); more are refused with 429 (0: unlimited)."
        ),
        .integer(
            "commands.rate_per_tenant",
            \.commands.ratePerTenant,
            range: 0...100_000_000,
            help: "Commands per minute a tenant may send to all its devices (also the burst); more are refused with 429 (0: unlimited)."
        ),
        .integer(
            "commands.default_timeout_ms",
            \.commands.defaultTimeoutMs,
            range: 1...3_600_000,
            help: "Milliseconds a two-way command waits for the device's answer when the request names no timeoutMs."
        ),
        .integer(
            "commands.max_timeout_ms",
            \.commands.maximumTimeoutMs,
            range: 1...3_600_000,
            help: "Longest timeoutMs a command may ask for; longer ones are refused."
        ),
        .integer(
            "commands.max_expiry_ms",
            \.commands.maximumExpiryMs,
            range: 1_000...2_592_000_000,
            help: "Longest a persistent command may stay queued for an offline device, in milliseconds (also the default expiresInMs); longer ones are refused."
        ),

        // [rules]
        .integer(
            "rules.max_per_tenant",
            \.rules.maximumPerTenant,
            range: 1...1_000_000,
            help: "Most rules a tenant may have; creating more is refused (429)."
        ),
        .integer(
            "rules.firing_retention_days",
            \.rules.firingRetentionDays,
            range: 1...36_500,
            help: "Days each rule firing (its inputs and what its actions did) is kept."
        ),
        .integer(
            "rules.action_queue",
            \.rules.actionQueue,
            range: 1...10_000_000,
            help: "Actions of each kind (republish, command, twin, telemetry, webhook) waiting to run; beyond, a firing's action is recorded as dropped instead of slowing anything."
        ),

        // [broker]
        .choice(
            "broker.durability",
            \.broker.durability,
            Durability.allCases.map { (word: $0.rawValue, value: $0) },
            flag: "--durability",
            help: "strict: QoS 1/2 acknowledged after fsync; batch: after the OS has the write, fsync every sync_interval; none: memory only (like Mosquitto without persistence)."
        ),
        .integer(
            "broker.sync_interval",
            \.broker.syncInterval,
            range: 1...60_000,
            help: "With batch durability: milliseconds between flushes of the broker state to stable storage."
        ),
        .integer(
            "broker.sys_interval",
            \.broker.sysInterval,
            range: 0...86_400,
            help: "Seconds between refreshes of the $SYS/broker/... topics; 0 disables them."
        ),
        .string(
            "broker.version",
            \.broker.version,
            help: "Version string published on $SYS/broker/version."
        ),

        // [broker.limits]
        .integer(
            "broker.limits.maximum_connections",
            \.broker.limits.maximumConnections,
            range: 1...Int.max,
            help: "Concurrent client connections; more are refused with \"server busy\"."
        ),
        .integer(
            "broker.limits.maximum_packet_size",
            \.broker.limits.maximumPacketSize,
            range: 1...268_435_460,
            help: "Largest MQTT packet accepted from or sent to a client, in bytes, fixed header included."
        ),
        .integer(
            "broker.limits.receive_maximum",
            \.broker.limits.receiveMaximum,
            range: 1...65535,
            help: "QoS 1/2 messages a client may have unacknowledged towards the broker (MQTT 5 receive maximum)."
        ),
        .integer(
            "broker.limits.maximum_inflight",
            \.broker.limits.maximumInflight,
            range: 1...65535,
            help: "QoS 1/2 messages the broker keeps in flight towards one client."
        ),
        .integer(
            "broker.limits.maximum_queued_messages",
            \.broker.limits.maximumQueuedMessages,
            range: 0...Int.max,
            help: "Messages queued per session beyond the in-flight window or while offline; the oldest is dropped."
        ),
        .integer(
            "broker.limits.maximum_pending_bytes",
            \.broker.limits.maximumPendingBytes,
            range: 0...Int.max,
            help: "Bytes of QoS 0 traffic buffered for a client that is not reading; beyond it QoS 0 is dropped."
        ),
        .integer(
            "broker.limits.maximum_topic_length",
            \.broker.limits.maximumTopicLength,
            range: 1...65535,
            help: "Longest topic name or filter, in bytes."
        ),
        .integer(
            "broker.limits.maximum_topic_levels",
            \.broker.limits.maximumTopicLevels,
            range: 1...65535,
            help: "Most levels (parts between slashes) in a topic name or filter."
        ),
        .integer(
            "broker.limits.maximum_subscriptions_per_client",
            \.broker.limits.maximumSubscriptionsPerClient,
            range: 1...Int.max,
            help: "Subscriptions one client may hold."
        ),
        .integer(
            "broker.limits.maximum_client_id_length",
            \.broker.limits.maximumClientIdLength,
            range: 1...65535,
            help: "Longest client identifier, in bytes."
        ),
        .integer(
            "broker.limits.topic_alias_maximum",
            \.broker.limits.topicAliasMaximum,
            range: 0...65535,
            help: "Inbound topic aliases a client may use (MQTT 5); 0 allows none."
        ),
        .integer(
            "broker.limits.flow_control_timeout",
            \.broker.limits.flowControlTimeout,
            range: 0...3600,
            help: "Seconds a publisher's acknowledgements may be held while a subscriber it feeds is congested; 0 turns flow control off."
        ),
        .integer(
            "broker.limits.maximum_pending_completions",
            \.broker.limits.maximumPendingCompletions,
            range: 1...65535,
            help: "Messages per connection whose platform work (e.g. a durable telemetry write) is pending; beyond it the broker stops reading from the connection."
        ),
        .integer(
            "broker.limits.connect_timeout",
            \.broker.limits.connectTimeout,
            range: 0...3600,
            help: "Seconds a new connection has to send CONNECT before it is closed; 0 waits forever."
        ),
        .integer(
            "broker.limits.maximum_keep_alive",
            \.broker.limits.maximumKeepAlive,
            range: 0...65535,
            help: "Longest keep-alive a client may ask for, in seconds; 0 means no limit."
        ),
        .integer(
            "broker.limits.maximum_session_expiry_interval",
            \.broker.limits.maximumSessionExpiryInterval,
            range: 0...Int(UInt32.max),
            help: "Longest session expiry granted, in seconds; 4294967295 means sessions never expire."
        ),

        // [broker.features]
        .boolean(
            "broker.features.retain_available",
            \.broker.features.retainAvailable,
            help: "Whether retained messages are supported."
        ),
        .boolean(
            "broker.features.wildcard_subscriptions_available",
            \.broker.features.wildcardSubscriptionsAvailable,
            help: "Whether subscriptions may use the + and # wildcards."
        ),
        .boolean(
            "broker.features.subscription_identifiers_available",
            \.broker.features.subscriptionIdentifiersAvailable,
            help: "Whether MQTT 5 subscription identifiers are supported."
        ),
        .boolean(
            "broker.features.shared_subscriptions_available",
            \.broker.features.sharedSubscriptionsAvailable,
            help: "Whether shared subscriptions ($share/group/filter) are supported."
        ),
        ConfigurationKey(
            name: "broker.features.maximum_qos",
            type: .integer(0...2),
            help: "Highest QoS the broker accepts and grants (0, 1 or 2).",
            get: { .integer(Int($0.broker.features.maximumQoS.rawValue)) },
            set: { configuration, value in
                guard case .integer(let integer) = value, let qos = QoS(rawValue: UInt8(clamping: integer)) else {
                    preconditionFailure("broker.features.maximum_qos set with an unchecked value")
                }
                configuration.broker.features.maximumQoS = qos
            }
        ),
    ]

    /// The registry entry named `name` (`network.mqtt_port`), if there is one.
    public static func key(named name: String) -> ConfigurationKey? {
        keysByName[name]
    }

    private static let keysByName: [String: ConfigurationKey] = Dictionary(
        keys.map { ($0.name, $0) },
        uniquingKeysWith: { first, _ in first }
    )
}
