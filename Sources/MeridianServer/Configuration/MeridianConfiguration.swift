import Foundation
import Logging
import MeridianCore
import MQTTBroker

/// Everything a Meridian server needs to start, with defaults that run a single node out of the box.
///
/// The values here are plain data; where they come from (flags, the config file, `MERIDIAN_*`
/// environment variables) is the business of ``MeridianConfiguration/load(commandLine:configFile:environment:)``
/// and the key registry ``MeridianConfiguration/keys``. To add a setting, add a field here (with its
/// default) and one entry to the registry; the readers, `meridian serve --help`, `meridian config show`
/// and validation all follow from that entry.
public struct MeridianConfiguration: Sendable {
    /// Where the server listens.
    public struct Network: Sendable {
        /// Address the MQTT and HTTP listeners bind to.
        public var bind: String = "0.0.0.0"
        /// TCP port of the MQTT listener; 0 picks a free port.
        public var mqttPort: Int = 1883
        /// TCP port of the HTTP API, the dashboard and MQTT over WebSocket; 0 picks a free port.
        public var httpPort: Int = 8080
        /// TCP port of the MQTT over TLS listener (when ``TLS/enabled``); 0 picks a free port.
        public var mqttsPort: Int = 8883
        /// TCP port of HTTPS: the HTTP port's routes and MQTT over secure WebSocket (when
        /// ``TLS/enabled``); 0 picks a free port.
        public var httpsPort: Int = 8443
        /// HTTP path where MQTT over WebSocket is accepted.
        public var webSocketPath: String = "/mqtt"
        /// Event-loop threads serving connections; 0 = one per core the process may run on.
        public var eventLoopThreads: Int = 0

        public init() {}
    }

    /// The TLS listeners (MQTT over TLS, HTTPS and secure WebSocket): certificate, key and
    /// client-certificate verification.
    public struct TLS: Sendable {
        /// Whether to serve MQTT over TLS and HTTPS at all.
        public var enabled: Bool = true
        /// PEM file with the server certificate (and any intermediates after it); empty means
        /// a self-signed certificate generated in the data directory.
        public var certificate: String = ""
        /// PEM file with the certificate's private key; empty together with ``certificate``.
        public var privateKey: String = ""
        /// PEM file with the certificate authorities client certificates must chain to.
        public var clientCA: String = ""
        /// Whether clients are asked for a certificate.
        public var clientAuthentication: ClientAuthentication = .none

        /// Whether TLS clients are asked for a certificate.
        public enum ClientAuthentication: String, Sendable, CaseIterable {
            /// Client certificates are not requested.
            case none
            /// A client may present a certificate; if it does, it must chain to ``TLS/clientCA``.
            case optional
            /// A client must present a certificate that chains to ``TLS/clientCA``.
            case required
        }

        public init() {}
    }

    /// How MQTT clients authenticate against the registry.
    public struct Auth: Sendable {
        /// Whether clients without a user name are accepted, as anonymous clients with the
        /// broker's allow-all rules on unmapped topics (never a tenant's `$tenants/...`).
        public var allowAnonymous: Bool = false
        /// How a verified client certificate identifies its device.
        public var certificateMapping: CertificateMapping = .fingerprint

        public init() {}
    }

    /// The REST API: token lifetimes and login rate limits.
    public struct API: Sendable {
        /// Seconds an access token (JWT) from login is valid.
        public var accessTokenLifetime: Int = 900
        /// Seconds a refresh token is valid.
        public var refreshTokenLifetime: Int = 30 * 24 * 3600
        /// Failed logins per user name, and per client address, within ``loginWindow`` before
        /// further attempts are refused with 429.
        public var loginMaximumFailures: Int = 10
        /// Seconds over which failed logins are counted.
        public var loginWindow: Int = 300
        /// Seconds of silence from a live-stream client (`/api/v1/stream`) before the server
        /// pings it; a client silent for twice as long is gone and its connection is closed.
        public var streamPingInterval: Int = 30
        /// On an empty database, the admin API key to create (`MERIDIAN_BOOTSTRAP_API_KEY`);
        /// nil reads that environment variable, and without it an admin user with a random
        /// password is created and printed once. Not a configuration key: never in a file.
        public var bootstrapAPIKey: String?

        public init() {}
    }

    /// The telemetry store.
    public struct Telemetry: Sendable {
        /// Seconds between checkpoints (head snapshots and latest values into the store, WAL
        /// segments dropped).
        public var checkpointInterval: Int = 10
        /// Samples per sealed chunk.
        public var chunkSamples: Int = 1024
        /// Days raw samples are kept (0: forever), unless a tenant or profile says otherwise.
        public var retentionRawDays: Int = 30
        /// Days 1-minute rollups are kept (0: forever).
        public var retentionMinuteDays: Int = 365
        /// Days 1-hour rollups are kept (0: forever).
        public var retentionHourDays: Int = 0

        public init() {}

        /// The default retention these settings describe.
        public var retention: TelemetryRetention {
            func days(_ value: Int) -> Int64? { value == 0 ? nil : Int64(value) * TelemetryRetention.day }
            return TelemetryRetention(raw: days(retentionRawDays), minute: days(retentionMinuteDays), hour: days(retentionHourDays))
        }
    }

    /// Device twins: what a twin may hold and how long its history is kept.
    public struct Twin: Sendable {
        /// Deepest nesting of objects and arrays in a twin's `desired` or `reported` state.
        public var maxDepth: Int = 8
        /// Largest twin (`{"desired": ..., "reported": ...}` as JSON), in bytes.
        public var maxDocumentBytes: Int = 65_536
        /// Days every twin version is kept in the history (0: forever); each twin's newest
        /// version is always kept.
        public var historyRetentionDays: Int = 90

        public init() {}

        /// The twin service's limits these settings describe.
        public var limits: TwinService.Limits {
            TwinService.Limits(
                maximumDepth: maxDepth,
                maximumDocumentBytes: maxDocumentBytes,
                historyRetention: historyRetentionDays == 0 ? nil : TimeInterval(historyRetentionDays) * 86_400
            )
        }
    }

    /// Commands (RPC) to devices.
    public struct Rules: Sendable {
        /// Most rules per tenant.
        public var maximumPerTenant: Int = 10_000
        /// Days firings are kept.
        public var firingRetentionDays: Int = 30
        /// Queued actions per kind beyond which actions are dropped.
        public var actionQueue: Int = 10_000

        public init() {}
    }

    public struct Commands: Sendable {
        /// Commands per minute per device (also the burst); 0: unlimited.
        public var ratePerDevice: Int = 60
        /// Commands per minute per tenant (also the burst); 0: unlimited.
        public var ratePerTenant: Int = 6000
        /// Milliseconds a two-way command waits for its answer when it names no timeout.
        public var defaultTimeoutMs: Int = 10_000
        /// Longest timeout a command may ask for, in milliseconds.
        public var maximumTimeoutMs: Int = 600_000
        /// Longest a persistent command may stay queued, in milliseconds (also its default expiry).
        public var maximumExpiryMs: Int = 604_800_000

        public init() {}
    }

    /// Where the platform's registry and telemetry live.
    public struct Database: Sendable {
        /// A `postgres://user[:password]@host[:port]/database[?sslmode=...]` URL: the registry
        /// and the telemetry chunks live in that PostgreSQL database. Empty: in embedded SQLite
        /// in the data directory. The broker's own session state and the telemetry WAL stay in
        /// the data directory either way.
        public var url: String = ""

        public init() {}
    }

    /// Listener addresses and ports.
    public var network = Network()
    /// TLS listeners and certificates.
    public var tls = TLS()
    /// MQTT client authentication.
    public var auth = Auth()
    /// The telemetry store.
    public var telemetry = Telemetry()
    /// Device twins.
    public var twin = Twin()
    /// Commands (RPC) to devices.
    public var commands = Commands()
    /// Rules, alarms and actions.
    public var rules = Rules()
    /// Directory holding the server's state (database, time series, broker sessions).
    public var dataDirectory: String = "./meridian-data"
    /// The registry's database: embedded SQLite (default) or PostgreSQL.
    public var database = Database()
    /// Lowest level of log messages written to standard error.
    public var logLevel: Logger.Level = .info
    /// The MQTT broker's limits and features.
    public var broker = BrokerConfiguration()
    /// The REST API.
    public var api = API()
    /// Devices' presence (connect and disconnect events).
    public var presence = Presence()

    /// Devices' presence.
    public struct Presence: Sendable {
        /// Days connect and disconnect events are kept (0: forever).
        public var retentionDays: Int = 90

        public init() {}
    }

    /// A configuration with every value at its default.
    public init() {}
}
