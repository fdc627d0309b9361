import MQTTClient
import MQTTCore
import NIOCore
import NIOSSL

extension MeridianDevice {
    /// How a device proves who it is.
    public enum Credentials: Sendable {
        /// An access token (`POST /api/v1/devices/{id}/credentials {"type": "token"}`, or the
        /// answer of provisioning), sent as the MQTT user name, as ThingsBoard devices do.
        case accessToken(String)
        /// A device user name and password credential.
        case password(username: String, password: String)
        /// A client certificate and its private key, both PEM (the tenant CA's, or one issued by a
        /// CA registered with the tenant). Needs ``Configuration/tls``.
        case certificate(certificatePEM: String, privateKeyPEM: String)
    }

    /// The server's TLS certificate and how to check it.
    public struct TLS: Sendable {
        /// PEM certificates to trust (e.g. the server's self-signed certificate, or the CA that
        /// issued it); `nil` trusts the system's roots.
        public var trustedCertificatesPEM: String?
        /// The name the server's certificate must carry; `nil` uses the host (unless it is an
        /// IP address).
        public var serverName: String?

        public init(trustedCertificatesPEM: String? = nil, serverName: String? = nil) {
            self.trustedCertificatesPEM = trustedCertificatesPEM
            self.serverName = serverName
        }
    }

    /// What ``MeridianDevice/send(_:at:)`` does when the offline buffer is full.
    public enum BufferOverflow: Sendable, Hashable {
        /// Drop the oldest buffered sample to make room (counted in ``Statistics/dropped``).
        case dropOldest
        /// Refuse the new sample: `send` throws ``MeridianDeviceError/bufferFull``.
        case rejectNew
    }

    /// Batching and buffering of telemetry.
    public struct TelemetryOptions: Sendable {
        /// At most this many samples (timestamped value sets) per MQTT message.
        public var maximumBatch: Int = 100
        /// How long the sender waits for more samples before sending a batch that is not full.
        public var linger: Duration = .milliseconds(20)
        /// At most this many samples wait for their acknowledgement (while offline, and in flight).
        public var bufferCapacity: Int = 10_000
        /// What happens to a sample sent while the buffer is full.
        public var overflow: BufferOverflow = .dropOldest
        /// A directory for the buffer on disk: samples not yet acknowledged survive a restart of
        /// the device's program (one file per device, `<client id>.telemetry`). `nil` keeps the
        /// buffer in memory only.
        public var bufferDirectory: String?

        public init() {}
    }

    /// Everything that shapes one device's connection.
    ///
    /// ```swift
    /// var configuration = MeridianDevice.Configuration(host: "localhost", credentials: .accessToken(token))
    /// configuration.deviceID = "k3x9..."       // optional: native topics devices/{id}/...
    /// configuration.telemetry.bufferDirectory = "/var/lib/thermostat"
    /// let device = MeridianDevice(configuration: configuration)
    /// ```
    public struct Configuration: Sendable {
        /// The server's host name or address.
        public var host: String
        /// The MQTT port; `nil` is 1883, or 8883 with ``tls``.
        public var port: Int?
        /// The device's id. With it the device uses its native topics (`devices/{id}/...`);
        /// without it ThingsBoard's equivalent `v1/devices/me/...` (the same topics on the server).
        public var deviceID: String?
        /// How the device authenticates.
        public var credentials: Credentials
        /// TLS to the server (the MQTTS port); `nil` is plain TCP.
        public var tls: TLS?
        /// MQTT 5 (the default) or 3.1.1.
        public var protocolVersion: MQTTProtocolVersion = .v5
        /// The MQTT client identifier: keep it stable, so that the device resumes its session
        /// (its subscriptions and the commands queued for it) after a reconnect or a restart.
        /// `nil` uses the device id, else an identifier derived from the credentials.
        public var clientIdentifier: String?
        /// MQTT keep alive: the server counts the device offline after 1.5 times this silence.
        public var keepAlive: Duration = .seconds(30)
        /// How long the server keeps the device's session (subscriptions, queued commands) while it
        /// is offline (MQTT 5; MQTT 3.1.1 sessions persist until the server discards them).
        public var sessionExpiry: Duration = .seconds(3600)
        /// Reconnecting after a lost connection, and retrying the first connect: exponential
        /// backoff with jitter.
        public var reconnect = MQTTClient.Configuration.ReconnectPolicy.exponentialBackoff(
            initialDelay: .milliseconds(500),
            maximumDelay: .seconds(60),
            jitter: 0.5
        )
        /// How long a connect attempt may take.
        public var connectTimeout: Duration = .seconds(15)
        /// How long twin requests wait for the server's answer.
        public var requestTimeout: Duration = .seconds(15)
        /// Telemetry batching and the offline buffer.
        public var telemetry = TelemetryOptions()

        /// A configuration for the device at `host` with `credentials`; everything else defaults.
        public init(host: String, port: Int? = nil, credentials: Credentials) {
            self.host = host
            self.port = port
            self.credentials = credentials
        }

        /// The prefix of the device's topics.
        var topicPrefix: String {
            deviceID.map { "devices/\($0)" } ?? "v1/devices/me"
        }

        /// The client identifier in effect.
        var effectiveClientIdentifier: String {
            if let clientIdentifier { return clientIdentifier }
            if let deviceID { return deviceID }
            return "device-" + credentialsFingerprint
        }

        /// A short stable name of the credentials (FNV-1a of the secret's bytes): never the secret.
        private var credentialsFingerprint: String {
            let text: String
            switch credentials {
            case .accessToken(let token): text = token
            case .password(let username, _): text = "user:" + username
            case .certificate(let certificate, _): text = certificate
            }
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            return String(hash, radix: 36)
        }

        /// The MQTT client configuration this device connects with.
        func clientConfiguration() throws -> MQTTClient.Configuration {
            var configuration = MQTTClient.Configuration(
                host: host,
                port: port ?? (tls == nil ? 1883 : 8883),
                transport: .tcp,
                protocolVersion: protocolVersion,
                clientIdentifier: effectiveClientIdentifier
            )
            configuration.cleanStart = false
            configuration.keepAlive = .nanoseconds(Int64(keepAlive.components.seconds) * 1_000_000_000)
            configuration.connectTimeout = TimeAmount(connectTimeout)
            configuration.reconnect = reconnect
            configuration.reconnect.resumeSession = true
            if protocolVersion == .v5 {
                configuration.connectProperties.sessionExpiryInterval = UInt32(
                    clamping: sessionExpiry.components.seconds
                )
            }
            switch credentials {
            case .accessToken(let token):
                configuration.username = token
            case .password(let username, let password):
                configuration.username = username
                configuration.setPassword(password)
            case .certificate:
                guard tls != nil else {
                    throw MeridianDeviceError.invalidConfiguration(
                        "credentials: a client certificate needs TLS (set tls)"
                    )
                }
            }
            if let tls {
                var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
                if let pem = tls.trustedCertificatesPEM {
                    do {
                        tlsConfiguration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
                    } catch {
                        throw MeridianDeviceError.invalidConfiguration("tls.trustedCertificatesPEM: not PEM certificates")
                    }
                }
                if case .certificate(let certificatePEM, let privateKeyPEM) = credentials {
                    do {
                        tlsConfiguration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
                            .map { .certificate($0) }
                    } catch {
                        throw MeridianDeviceError.invalidConfiguration("credentials.certificatePEM: not a PEM certificate")
                    }
                    do {
                        tlsConfiguration.privateKey = .privateKey(
                            try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
                        )
                    } catch {
                        throw MeridianDeviceError.invalidConfiguration("credentials.privateKeyPEM: not a PEM private key")
                    }
                }
                configuration.transport = .tls(tlsConfiguration)
                configuration.tlsServerName = tls.serverName
            }
            return configuration
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
