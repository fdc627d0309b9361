import MQTTClient
import MQTTCore
import NIOCore
import NIOSSL
import Testing

@Suite("TLS")
struct TLSTests {
    private func clientTLS(trusting caFile: String) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        return tls
    }

    @Test(
        "connects over TLS with the test CA as trust root",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func trustedServer(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        var options = BrokerOptions()
        options.tls = certificates.brokerFiles
        try await withBroker(kind, options) { broker in
            let tls = try clientTLS(trusting: certificates.caCertificate)
            let client = makeClient(broker, version: version) {
                $0.host = "localhost"
                $0.port = broker.tlsPort!
                $0.transport = .tls(tls)
            }
            let connAck = try await client.connect()
            #expect(connAck.reasonCode == .success)
            let messages = StreamRecorder(client.messages)
            let topic = uniqueTopic("tls")
            try await client.subscribe(topic, qos: .exactlyOnce)
            try await client.publish(topic, payload: "secret telemetry", qos: .exactlyOnce)
            #expect(try await messages.first().payload.string == "secret telemetry")
            try await client.disconnect()
        }
    }

    @Test(
        "a server certificate from an untrusted CA is rejected with tlsHandshakeFailed",
        arguments: TestBrokerKind.allCases
    )
    func untrustedServer(kind: TestBrokerKind) async throws {
        let certificates = try await TestCertificates.make()
        let stranger = try await TestCertificates.make(name: "Someone Else's CA")
        defer {
            certificates.remove()
            stranger.remove()
        }
        var options = BrokerOptions()
        options.tls = certificates.brokerFiles
        try await withBroker(kind, options) { broker in
            let tls = try clientTLS(trusting: stranger.caCertificate)
            let client = makeClient(broker) {
                $0.host = "localhost"
                $0.port = broker.tlsPort!
                $0.transport = .tls(tls)
            }
            let error = await #expect(throws: MQTTClientError.self) {
                try await client.connect()
            }
            #expect(error?.code == .tlsHandshakeFailed)
            #expect(error?.underlying != nil)
            #expect(!client.isConnected)
        }
    }

    @Test("the certificate must name the server: tlsServerName is what is checked", arguments: TestBrokerKind.allCases)
    func hostnameIsVerified(kind: TestBrokerKind) async throws {
        let certificates = try await TestCertificates.make(subjectAltNames: "DNS:localhost")
        defer { certificates.remove() }
        var options = BrokerOptions()
        options.tls = certificates.brokerFiles
        try await withBroker(kind, options) { broker in
            let tls = try clientTLS(trusting: certificates.caCertificate)
            let wrongName = makeClient(broker) {
                $0.host = "127.0.0.1"
                $0.port = broker.tlsPort!
                $0.transport = .tls(tls)
                $0.tlsServerName = "not-localhost.example"
            }
            let error = await #expect(throws: MQTTClientError.self) {
                try await wrongName.connect()
            }
            #expect(error?.code == .tlsHandshakeFailed)

            let rightName = makeClient(broker) {
                $0.host = "127.0.0.1"
                $0.port = broker.tlsPort!
                $0.transport = .tls(tls)
                $0.tlsServerName = "localhost"
            }
            try await rightName.connect()
            try await rightName.disconnect()
        }
    }

    @Test("MQTT over secure WebSocket", arguments: TestBrokerKind.allCases)
    func secureWebSocket(kind: TestBrokerKind) async throws {
        let certificates = try await TestCertificates.make()
        defer { certificates.remove() }
        var options = BrokerOptions()
        options.tls = certificates.brokerFiles
        options.tlsWebSocket = true
        try await withBroker(kind, options) { broker in
            let tls = try clientTLS(trusting: certificates.caCertificate)
            let client = makeClient(broker) {
                $0.host = "localhost"
                $0.port = broker.tlsWebSocketPort!
                $0.transport = .webSocket(path: "/mqtt", tls: tls)
            }
            try await client.connect()
            let messages = StreamRecorder(client.messages)
            let topic = uniqueTopic("wss")
            try await client.subscribe(topic, qos: .atLeastOnce)
            try await client.publish(topic, payload: "over wss", qos: .atLeastOnce)
            #expect(try await messages.first().payload.string == "over wss")
            try await client.disconnect()
        }
    }
}
