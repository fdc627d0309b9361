import MQTTClient
import MQTTCore
import NIOCore

/// The transports a test can run over.
enum TestTransport: String, Sendable, CaseIterable, CustomStringConvertible {
    case tcp
    case webSocket

    var description: String { rawValue }
}

/// A unique client identifier for one test.
func uniqueClientID(_ prefix: String = "client") -> String {
    "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
}

/// A unique topic (so parallel tests never see each other's messages).
func uniqueTopic(_ prefix: String = "test") -> String {
    "\(prefix)/\(UInt32.random(in: 0...UInt32.max))"
}

/// A client configured for `broker`.
func makeClient(
    _ broker: some TestBrokerFixture,
    clientID: String = uniqueClientID(),
    version: MQTTProtocolVersion = .v5,
    transport: TestTransport = .tcp,
    configure: (inout MQTTClient.Configuration) -> Void = { _ in }
) -> MQTTClient {
    var configuration = MQTTClient.Configuration(
        host: broker.host,
        port: transport == .tcp ? broker.mqttPort : broker.wsPort,
        transport: transport == .tcp ? .tcp : .webSocket(path: "/mqtt", tls: nil),
        protocolVersion: version,
        clientIdentifier: clientID
    )
    configuration.connectTimeout = .seconds(20)
    configure(&configuration)
    return MQTTClient(configuration: configuration)
}

extension ByteBuffer {
    /// The readable bytes as a string.
    var string: String { String(buffer: self) }
}

/// Every pair of an element of `first` with one of `second`, for tests parameterised over
/// three dimensions (`@Test` takes at most two argument collections).
func allPairs<A: Sendable, B: Sendable>(_ first: [A], _ second: [B]) -> [(A, B)] {
    first.flatMap { a in second.map { (a, $0) } }
}
