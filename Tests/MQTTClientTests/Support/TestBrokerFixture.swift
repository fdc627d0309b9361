import Foundation

/// A broker the client tests talk to: Mosquitto (``MosquittoFixture``) or our own broker
/// in-process (``MeridianFixture``); ``TestBrokers/start(_:_:)`` is the one place that picks.
protocol TestBrokerFixture: Sendable {
    /// The host to connect to.
    var host: String { get }
    /// The plain MQTT (TCP) port.
    var mqttPort: Int { get }
    /// The MQTT-over-WebSocket port (path `/mqtt`).
    var wsPort: Int { get }
    /// The MQTT-over-TLS port, when started with ``BrokerOptions/tls``.
    var tlsPort: Int? { get }
    /// The MQTT-over-secure-WebSocket port, when started with ``BrokerOptions/tlsWebSocket``.
    var tlsWebSocketPort: Int? { get }
    /// Stops the broker abruptly (clients lose their connections without DISCONNECT), keeping
    /// its configuration and ports for ``restart()``.
    func kill() async
    /// Starts the broker again after ``kill()``, on the same ports.
    func restart() async throws
    /// Stops the broker for good and removes its files.
    func stop() async
}

/// What a test needs from its broker beyond the plain anonymous listeners.
struct BrokerOptions: Sendable {
    /// Whether clients without credentials are accepted.
    var allowAnonymous = true
    /// Add a TLS listener with these PEM files.
    var tls: TLSFiles?
    /// Also add a WebSocket-over-TLS listener (needs ``tls``).
    var tlsWebSocket = false
    /// Largest packet the broker accepts (announced in its MQTT 5 CONNACK).
    var maximumPacketSize: Int?
    /// QoS 1/2 messages in flight towards each client.
    var maximumInflightMessages: Int?

    struct TLSFiles: Sendable {
        var caFile: String
        var certificateFile: String
        var keyFile: String
    }
}

/// Which broker a test runs against. Tests that hold for any conforming broker take
/// `TestBrokerKind.allCases` as an argument; tests of Mosquitto-only behaviour use `.mosquitto`.
enum TestBrokerKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A Mosquitto process (the reference broker).
    case mosquitto
    /// Our own `MQTTBroker`, in this process.
    case meridian

    var description: String { rawValue }
}

/// Where the client tests get their brokers.
enum TestBrokers {
    /// Starts a fresh broker of `kind` for one test.
    static func start(
        _ kind: TestBrokerKind = .mosquitto,
        _ options: BrokerOptions = BrokerOptions()
    ) async throws -> any TestBrokerFixture {
        switch kind {
        case .mosquitto: try await MosquittoFixture.start(options)
        case .meridian: try await MeridianFixture.start(options)
        }
    }
}
