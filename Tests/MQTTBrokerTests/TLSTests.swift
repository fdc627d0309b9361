import Crypto
import Foundation
import Logging
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Testing
import X509

@testable import MQTTBroker

/// Accepts every client and keeps the requests it was asked about.
final class RecordingAuthenticator: MQTTAuthenticator {
    private let requests = NIOLockedValueBox<[MQTTAuthenticationRequest]>([])

    var seen: [MQTTAuthenticationRequest] { requests.withLockedValue { $0 } }

    func authenticate(_ request: MQTTAuthenticationRequest) async -> MQTTAuthenticationResult {
        requests.withLockedValue { $0.append(request) }
        return .accept(MQTTPrincipal(clientIdentifier: request.clientIdentifier))
    }
}

/// A real broker on a real socket with a TLS listener, for the TLS tests.
struct TLSBrokerFixture {
    let broker: MQTTBroker
    let group: MultiThreadedEventLoopGroup
    let listener: MQTTListener
    let tls: MQTTTLSContextProvider

    static func with(
        _ configuration: TLSConfiguration,
        authenticator: any MQTTAuthenticator = AllowAllAuthenticator(),
        logger: Logger = Logger(label: "tls-test", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (TLSBrokerFixture) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var brokerConfiguration = BrokerConfiguration()
        brokerConfiguration.sysInterval = 0
        let broker = MQTTBroker(
            configuration: brokerConfiguration,
            eventLoopGroup: group,
            authenticator: authenticator,
            logger: logger
        )
        let tls = MQTTTLSContextProvider(try NIOSSLContext(configuration: configuration))
        do {
            let listener = try await broker.bind(host: "127.0.0.1", port: 0, tls: tls)
            try await body(TLSBrokerFixture(broker: broker, group: group, listener: listener, tls: tls))
        } catch {
            await broker.shutdown(timeout: .seconds(1))
            try await group.shutdownGracefully()
            throw error
        }
        await broker.shutdown(timeout: .seconds(1))
        try await group.shutdownGracefully()
    }

    /// A client of the TLS port (`tls` nil: plaintext MQTT on the TLS port).
    func client(
        _ tls: TLSConfiguration?,
        version: MQTTProtocolVersion = .v5,
        id: String = "tls-\(UInt32.random(in: 0...UInt32.max))"
    ) -> MQTTClient {
        var configuration = MQTTClient.Configuration(
            host: "127.0.0.1",
            port: listener.port,
            transport: tls.map { .tls($0) } ?? .tcp,
            protocolVersion: version,
            clientIdentifier: id
        )
        configuration.tlsServerName = "localhost"
        configuration.connectTimeout = .seconds(20)
        return MQTTClient(configuration: configuration, eventLoopGroup: group)
    }
}

/// Publishes on a fresh topic from `publisher` and expects `subscriber` to receive it.
private func expectRoundTrip(
    _ publisher: MQTTClient,
    _ subscriber: MQTTClient,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let topic = "tls/\(UInt32.random(in: 0...UInt32.max))"
    try await subscriber.subscribe(topic, qos: .atLeastOnce)
    try await publisher.publish(topic, payload: ByteBuffer(string: "over tls"), qos: .atLeastOnce)
    let message = try await withTimeout(.seconds(5)) {
        var iterator = subscriber.messages.makeAsyncIterator()
        return await iterator.next()
    }
    #expect(message?.topic == topic, sourceLocation: sourceLocation)
    #expect(message.map { String(buffer: $0.payload) } == "over tls", sourceLocation: sourceLocation)
}

private struct Timeout: Error {}

private func withTimeout<T: Sendable>(
    _ duration: Duration,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: duration)
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw Timeout()
        }
        group.cancelAll()
        return value
    }
}

private func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// Waits until `condition` holds (checked every 20 ms, for up to 5 s).
private func eventually(_ condition: () -> Bool) async throws -> Bool {
    for _ in 0..<250 {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

@Suite("TLS listener")
struct TLSTests {
    @Test("MQTT over TLS: connect, subscribe, publish", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func publishSubscribe(version: MQTTProtocolVersion) async throws {
        let pki = try TestPKI()
        let authenticator = RecordingAuthenticator()
        try await TLSBrokerFixture.with(try pki.serverConfiguration(), authenticator: authenticator) { fixture in
            let tls = try pki.clientConfiguration()
            let subscriber = fixture.client(tls, version: version)
            let publisher = fixture.client(tls, version: version)
            #expect(try await subscriber.connect().reasonCode == .success)
            #expect(try await publisher.connect().reasonCode == .success)
            try await expectRoundTrip(publisher, subscriber)
            #expect(authenticator.seen.count == 2)
            #expect(authenticator.seen.allSatisfy { $0.transport == .tls && $0.certificate == nil })
            try await subscriber.disconnect()
            try await publisher.disconnect()
        }
    }

    @Test("a client certificate from the trusted CA reaches the authenticator: subject, SANs, fingerprint, DER")
    func clientCertificateReachesAuthenticator() async throws {
        let pki = try TestPKI()
        let authenticator = RecordingAuthenticator()
        let configuration = try pki.serverConfiguration(verification: .noHostnameVerification)
        try await TLSBrokerFixture.with(configuration, authenticator: authenticator) { fixture in
            let client = fixture.client(try pki.clientConfiguration(presenting: pki.client), id: "device-42")
            #expect(try await client.connect().reasonCode == .success)
            let request = try #require(authenticator.seen.first)
            #expect(request.clientIdentifier == "device-42")
            #expect(request.transport == .tls)
            let certificate = try #require(request.certificate)
            #expect(certificate.subject == "CN=device-42,O=Meridian Tests")
            #expect(certificate.commonName == "device-42")
            #expect(certificate.subjectAlternativeNames == ["DNS:device-42.example", "URI:urn:meridian:device:42"])
            #expect(certificate.der == pki.client.der)
            #expect(certificate.sha256Fingerprint == hex(SHA256.hash(data: pki.client.der)))
            #expect(certificate.sha256Fingerprint.count == 64)
            try await client.disconnect()
        }
    }

    @Test("optional client certificates: a client without one connects, with no certificate for the authenticator")
    func optionalWithoutCertificate() async throws {
        let pki = try TestPKI()
        let authenticator = RecordingAuthenticator()
        try await TLSBrokerFixture.with(
            try pki.serverConfiguration(verification: .optionalVerification),
            authenticator: authenticator
        ) { fixture in
            let anonymous = fixture.client(try pki.clientConfiguration())
            #expect(try await anonymous.connect().reasonCode == .success)
            let identified = fixture.client(try pki.clientConfiguration(presenting: pki.client))
            #expect(try await identified.connect().reasonCode == .success)
            let certificates = authenticator.seen.map { $0.certificate?.commonName }
            #expect(certificates.count == 2)
            #expect(certificates.contains(nil))
            #expect(certificates.contains("device-42"))
            try await anonymous.disconnect()
            try await identified.disconnect()
        }
    }

    @Test(
        "a client certificate from another CA is refused at the handshake, with one log line",
        arguments: [CertificateVerification.noHostnameVerification, .optionalVerification]
    )
    func untrustedClientCertificate(verification: CertificateVerification) async throws {
        let pki = try TestPKI()
        let authenticator = RecordingAuthenticator()
        let logs = LogRecorder()
        let configuration = try pki.serverConfiguration(verification: verification)
        try await TLSBrokerFixture.with(configuration, authenticator: authenticator, logger: logs.logger) { fixture in
            let client = fixture.client(try pki.clientConfiguration(presenting: pki.strangerClient))
            await #expect(throws: (any Error).self) { try await client.connect() }
            #expect(!client.isConnected)
            #expect(try await eventually { logs.lines("TLS handshake failed").count == 1 })
            let line = try #require(logs.lines("TLS handshake failed").first)
            #expect(line.metadata["tls.remote"]?.hasPrefix("127.0.0.1:") == true)
            #expect(line.metadata["tls.reason"]?.contains("CERTIFICATE_VERIFY_FAILED") == true)
            #expect(authenticator.seen.isEmpty)
            #expect(fixture.broker.statistics.connections == 0)
        }
    }

    @Test("required client certificates: a client without one is refused at the handshake")
    func requiredWithoutCertificate() async throws {
        let pki = try TestPKI()
        let authenticator = RecordingAuthenticator()
        let logs = LogRecorder()
        let configuration = try pki.serverConfiguration(verification: .noHostnameVerification)
        try await TLSBrokerFixture.with(configuration, authenticator: authenticator, logger: logs.logger) { fixture in
            let client = fixture.client(try pki.clientConfiguration())
            await #expect(throws: (any Error).self) { try await client.connect() }
            #expect(try await eventually { logs.lines("TLS handshake failed").count == 1 })
            #expect(
                logs.lines("TLS handshake failed").first?.metadata["tls.reason"]?.contains("none presented") == true
            )
            #expect(authenticator.seen.isEmpty)
        }
    }

    @Test("a plaintext MQTT client on the TLS port is closed with one log line; TLS clients keep working")
    func plaintextClientRefused() async throws {
        let pki = try TestPKI()
        let logs = LogRecorder()
        try await TLSBrokerFixture.with(try pki.serverConfiguration(), logger: logs.logger) { fixture in
            let tls = try pki.clientConfiguration()
            let established = fixture.client(tls)
            #expect(try await established.connect().reasonCode == .success)

            let plaintext = fixture.client(nil)
            await #expect(throws: MQTTClientError.self) { try await plaintext.connect() }
            #expect(!plaintext.isConnected)
            #expect(try await eventually { logs.lines("TLS handshake failed").count == 1 })
            let line = try #require(logs.lines("TLS handshake failed").first)
            #expect(line.metadata["tls.listener"] == "mqtts")
            #expect(line.metadata["tls.remote"]?.hasPrefix("127.0.0.1:") == true)
            #expect(line.metadata["tls.reason"]?.contains("not a TLS client") == true)

            // The connection made before, and a new one, both work.
            let newcomer = fixture.client(tls)
            #expect(try await newcomer.connect().reasonCode == .success)
            try await expectRoundTrip(established, newcomer)
            #expect(established.isConnected)
            #expect(fixture.broker.statistics.connections == 2)
            try await established.disconnect()
            try await newcomer.disconnect()
        }
    }

    @Test("replacing the listener's context: new connections get the new certificate, established ones continue")
    func replacedContext() async throws {
        let pki = try TestPKI()
        let next = try TestPKI()
        try await TLSBrokerFixture.with(try pki.serverConfiguration()) { fixture in
            let established = fixture.client(try pki.clientConfiguration())
            #expect(try await established.connect().reasonCode == .success)

            fixture.tls.replace(with: try NIOSSLContext(configuration: try next.serverConfiguration()))

            let trustingOld = fixture.client(try pki.clientConfiguration())
            let error = await #expect(throws: MQTTClientError.self) { try await trustingOld.connect() }
            #expect(error?.code == .tlsHandshakeFailed)
            let trustingNew = fixture.client(try next.clientConfiguration())
            #expect(try await trustingNew.connect().reasonCode == .success)
            try await expectRoundTrip(established, trustingNew)
            try await established.disconnect()
            try await trustingNew.disconnect()
        }
    }

    @Test("MQTTPeerCertificate from DER: RFC 4514 subject with escaping, IP and email SANs")
    func peerCertificateDescription() throws {
        let authority = try TestAuthority(name: "Escaping, Inc. CA")
        let identity = try authority.issue(
            commonName: "sensor+1, hall \"B\"",
            names: [
                .ipAddress(ASN1OctetString(contentBytes: [10, 0, 0, 7])),
                .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))),
                .rfc822Name("ops@example.com"),
            ],
            usage: .clientAuth
        )
        let certificate = try MQTTPeerCertificate(derBytes: identity.der)
        #expect(certificate.subject == #"CN=sensor\+1\, hall \"B\",O=Meridian Tests"#)
        #expect(certificate.commonName == "sensor+1, hall \"B\"")
        #expect(certificate.subjectAlternativeNames == ["IP:10.0.0.7", "IP:::1", "email:ops@example.com"])
        #expect(throws: (any Error).self) { try MQTTPeerCertificate(derBytes: [0x30, 0x03, 0x02, 0x01, 0x01]) }
    }
}
