"""Every name the interop suite takes from Meridian's contract, in one place.

If the broker renames a metric, a `$SYS` topic or a setting, change it here only.
"""

import os

# --- `meridian serve` -------------------------------------------------------------------
# Flags every `meridian serve` started by the suite gets (the ports are chosen by the OS).
SERVE_ARGS = ["serve", "--bind", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0",
              "--mqtts-port", "0", "--https-port", "0",
              "--log-level", "info"]  # + "--data-dir", <tmp>
# Settings passed as `--set key=value` to every broker the suite starts.
# `auth.allow_anonymous`: the suite's clients connect without credentials (the registry's
# authentication has its own tests, test_access_*.py).
DEFAULT_SETTINGS = {"broker.sys_interval": "1", "auth.allow_anonymous": "true"}
# The readiness line on stdout: `listening mqtt=<port> http=<port> [key=value ...]`; with
# TLS enabled (the default) `mqtts=<port> https=<port>` follow.
READY_PREFIX = "listening"
READY_TIMEOUT = 60.0  # seconds to wait for it
STOP_TIMEOUT = 10.0  # seconds SIGTERM may take before the process must have exited 0

# Broker state (durability): `<data_dir>/broker.sqlite`, SQLite with GRDB's migration table.
DURABILITY_FLAG = "--durability"  # strict | batch | none (key broker.durability)
DURABILITY_MODES = ["strict", "batch", "none"]
BROKER_STATE_FILE = "broker.sqlite"
MIGRATIONS_TABLE = "grdb_migrations"  # column `identifier`; Meridian's rows are `broker-v<N>`
# One stderr line at start-up (key=value metadata on the same line) when state was read.
RECOVERED_LOG = "recovered broker state"
RECOVERED_KEYS = ["sessions", "subscriptions", "queued", "inflight", "retained", "duration_ms"]
STARTUP_FAILURE_EXIT = 1  # a corrupt or newer broker.sqlite stops start-up with this code

# Options `meridian serve --help` must list.
HELP_OPTIONS = ["--mqtt-port", "--http-port", "--mqtts-port", "--https-port", "--bind", "--data-dir",
                "--config", "--log-level"]

# Settings used by tests (`--set key=value`), and their Mosquitto equivalent (config file
# option) for MERIDIAN_TEST_BROKER=mosquitto. A setting missing here skips under Mosquitto.
SETTING_MAX_PACKET_SIZE = "broker.limits.maximum_packet_size"
SETTING_MAX_QUEUED = "broker.limits.maximum_queued_messages"
SETTING_MAX_CONNECTIONS = "broker.limits.maximum_connections"
SETTING_SYS_INTERVAL = "broker.sys_interval"
SETTING_DURABILITY = "broker.durability"
SETTING_SYNC_INTERVAL = "broker.sync_interval"  # ms between fsyncs with batch durability
MOSQUITTO_EQUIVALENTS = {
    SETTING_SYS_INTERVAL: "sys_interval",
    SETTING_MAX_PACKET_SIZE: "max_packet_size",
    SETTING_MAX_QUEUED: "max_queued_messages",
}

# --- TLS ----------------------------------------------------------------------------------
# Keys of the readiness line for the TLS listeners (MQTT over TLS; HTTPS with MQTT over
# secure WebSocket at WS_PATH).
READY_KEY_MQTTS = "mqtts"
READY_KEY_HTTPS = "https"
SETTING_TLS_ENABLED = "tls.enabled"
SETTING_TLS_CERTIFICATE = "tls.certificate"
SETTING_TLS_PRIVATE_KEY = "tls.private_key"
SETTING_TLS_CLIENT_CA = "tls.client_ca"
SETTING_TLS_CLIENT_AUTH = "tls.client_auth"  # none | optional | required
# The self-signed certificate generated when none is configured, under the data dir.
GENERATED_CERTIFICATE = "tls/server.crt"
GENERATED_KEY = "tls/server.key"
# Reload of certificate, key and client CA (loopback clients only), besides SIGHUP.
TLS_RELOAD_PATH = "/admin/tls/reload"
# Log lines (stderr) the TLS tests look for.
LOG_TLS_HANDSHAKE_FAILED = "TLS handshake failed"
LOG_TLS_RELOADED = "TLS certificate reloaded"
LOG_TLS_RELOAD_FAILED = "TLS reload failed"

# --- WebSocket ----------------------------------------------------------------------------
WS_PATH = "/mqtt"  # on the http port, subprotocol "mqtt" (paho sends it)

# --- HTTP -------------------------------------------------------------------------------
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# Prometheus sample names (label sets are summed). Only `mqtt_` names are asserted.
METRIC_CONNECTIONS = "mqtt_connections"
METRIC_MESSAGES_RECEIVED = "mqtt_messages_received_total"
METRIC_MESSAGES_SENT = "mqtt_messages_sent_total"
REQUIRED_METRICS = [METRIC_CONNECTIONS, METRIC_MESSAGES_RECEIVED, METRIC_MESSAGES_SENT]

# --- $SYS -------------------------------------------------------------------------------
SYS_TOPICS = [
    "$SYS/broker/clients/connected",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/uptime",
    "$SYS/broker/version",
]

# --- reason codes -----------------------------------------------------------------------
RC_SUCCESS = 0x00
RC_DISCONNECT_WITH_WILL = 0x04
RC_SUBACK_FAILURE_311 = 0x80
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_PACKET_TOO_LARGE = 0x95

# --- timing -----------------------------------------------------------------------------
# Scale every wait (e.g. MERIDIAN_TEST_TIME_SCALE=3 on a slow machine).
TIME_SCALE = float(os.environ.get("MERIDIAN_TEST_TIME_SCALE", "1"))
TIMEOUT = 5.0 * TIME_SCALE  # for something that must happen
# How long to watch for something that must NOT happen (only where no later event can
# prove its absence).
QUIET = 0.7 * TIME_SCALE
