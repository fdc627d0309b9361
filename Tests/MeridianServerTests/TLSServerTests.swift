import Crypto
import Foundation
import Logging
import MQTTBroker
import MQTTClient
import MQTTCore
import NIOCore
import NIOSSL
import SwiftASN1
import Testing
import X509

@testable import MeridianServer

@Suite("TLS in meridian serve")
struct TLSServerTests {
    private let quiet = Logger(label: "meridian-test", factory: { _ in SwiftLogNoOpLogHandler() })

    // MARK: the self-signed certificate

    @Test("with no certificate configured, a self-signed one is generated in <data_dir>/tls, key mode 0600")
    func selfSignedGenerated() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let logs = RecordedLogs()
        let material = try TLSMaterial.load(.init(), dataDirectory: directory.path, logger: logs.logger)
        let files = TLSMaterial.GeneratedFiles(dataDirectory: directory.path)
        #expect(material.certificatePath == files.certificate)
        #expect(material.isSelfSigned)

        let keyMode = try FileManager.default.attributesOfItem(atPath: files.privateKey)[.posixPermissions] as? Int
        #expect(keyMode == 0o600)

        let certificate = try Certificate(pemEncoded: String(contentsOfFile: files.certificate, encoding: .utf8))
        #expect(certificate.issuer == certificate.subject)
        #expect(P256.Signing.PublicKey(certificate.publicKey) != nil)
        let names = try #require(try certificate.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("localhost")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
        #expect(
            names.contains(
                .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1])))
            )
        )
        let hostname = SelfSignedCertificate.currentHostname()
        if !hostname.isEmpty && hostname != "localhost" { #expect(names.contains(.dnsName(hostname))) }
        let validity = certificate.notValidAfter.timeIntervalSince(Date())
        #expect(validity > 700 * 24 * 3600 && validity < 732 * 24 * 3600)

        let der = try NIOSSLCertificate.fromPEMFile(files.certificate)[0].toDERBytes()
        #expect(material.fingerprint == SHA256.hash(data: der).map { String(format: "%02x", $0) }.joined())
        #expect(logs.lines("generated a self-signed TLS certificate").count == 1)
    }

    @Test("an expired generated certificate is renewed at start-up, not on reload")
    func expiredSelfSignedRenewed() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let files = TLSMaterial.GeneratedFiles(dataDirectory: directory.path)
        let old = try SelfSignedCertificate.make(now: Date().addingTimeInterval(-3 * 365 * 24 * 3600))
        try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
        try Data(old.privateKey.utf8).write(to: URL(fileURLWithPath: files.privateKey))
        try Data(old.certificate.utf8).write(to: URL(fileURLWithPath: files.certificate))
        let expired = try fingerprint(ofPEM: old.certificate)

        let reloaded = try TLSMaterial.load(.init(), dataDirectory: directory.path, logger: quiet)
        #expect(reloaded.fingerprint == expired)

        let logs = RecordedLogs()
        let renewed = try TLSMaterial.load(
            .init(),
            dataDirectory: directory.path,
            renewExpired: true,
            logger: logs.logger
        )
        #expect(renewed.fingerprint != expired)
        #expect(renewed.notValidAfter > Date().addingTimeInterval(700 * 24 * 3600))
        #expect(logs.lines("the self-signed TLS certificate has expired; making a new one").count == 1)
    }

    @Test("the generated certificate is reused by later starts; clients that pinned it keep connecting")
    func selfSignedReusedAcrossStarts() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let configuration = testConfiguration(dataDirectory: directory.path)
        let certificateFile = TLSMaterial.GeneratedFiles(dataDirectory: directory.path).certificate
        let firstLogs = RecordedLogs()
        try await withServer(configuration, logger: firstLogs.logger) { endpoints in
            #expect(
                endpoints.listeningLine.hasPrefix(
                    "listening mqtt=\(endpoints.mqttPort) http=\(endpoints.httpPort) mqtts="
                )
            )
            let client = try tlsClient(endpoints, trusting: try pinning(certificateFile))
            #expect(try await client.connect().reasonCode == .success)
            try await client.disconnect()
        }
        #expect(firstLogs.lines("generated a self-signed TLS certificate").count == 1)
        let firstFingerprint = try #require(
            firstLogs.lines("TLS certificate loaded").first?.metadata["tls.fingerprint"]
        )
        let pinned = try String(contentsOfFile: certificateFile, encoding: .utf8)

        let secondLogs = RecordedLogs()
        try await withServer(configuration, logger: secondLogs.logger) { endpoints in
            let client = try tlsClient(endpoints, trusting: try pinning(certificateFile))
            #expect(try await client.connect().reasonCode == .success)
            try await client.disconnect()
        }
        #expect(secondLogs.lines("generated a self-signed TLS certificate").isEmpty)
        #expect(secondLogs.lines("TLS certificate loaded").first?.metadata["tls.fingerprint"] == firstFingerprint)
        #expect(try String(contentsOfFile: certificateFile, encoding: .utf8) == pinned)
    }

    @Test("MQTT over TLS and over secure WebSocket reach the broker", arguments: [false, true])
    func mqttsAndWSS(webSocket: Bool) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let configuration = testConfiguration(dataDirectory: directory.path)
        let certificateFile = TLSMaterial.GeneratedFiles(dataDirectory: directory.path).certificate
        try await withServer(configuration) { endpoints in
            let trust = try pinning(certificateFile)
            let subscriber = try tlsClient(endpoints, trusting: trust, webSocket: webSocket)
            let publisher = try tlsClient(endpoints, trusting: trust, webSocket: !webSocket)
            #expect(try await subscriber.connect().reasonCode == .success)
            #expect(try await publisher.connect().reasonCode == .success)
            try await expectDelivery(from: publisher, to: subscriber)
            try await subscriber.disconnect()
            try await publisher.disconnect()
        }
    }

    @Test("HTTPS: a refused WebSocket upgrade gets a 400 saying why; an accepted one switches protocols")
    func refusedSecureUpgradeIsAnswered() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let configuration = testConfiguration(dataDirectory: directory.path)
        let certificateFile = TLSMaterial.GeneratedFiles(dataDirectory: directory.path).certificate
        try await withServer(configuration) { endpoints in
            let port = try #require(endpoints.httpsPort)
            let trust = try pinning(certificateFile)
            let refused = try await ServerHTTPClient.upgrade(
                port: port,
                path: "/mqtt",
                subprotocols: ["chat"],
                tls: trust
            )
            #expect(refused?.status == 400)
            #expect(refused?.header("Content-Type") == "application/problem+json")
            #expect(refused?.body.contains("needs the subprotocol mqtt") == true)
            let accepted = try await ServerHTTPClient.upgrade(
                port: port,
                path: "/mqtt",
                subprotocols: ["mqtt"],
                tls: trust
            )
            #expect(accepted?.status == 101)
            #expect(accepted?.header("Sec-WebSocket-Protocol") == "mqtt")
        }
    }

    @Test("tls.enabled = false: no TLS listeners, none in the listening line, no certificate made")
    func tlsSwitchedOff() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let configuration = testConfiguration(dataDirectory: directory.path) { $0.tls.enabled = false }
        try await withServer(configuration) { endpoints in
            #expect(endpoints.mqttsPort == nil)
            #expect(endpoints.httpsPort == nil)
            #expect(endpoints.listeningLine == "listening mqtt=\(endpoints.mqttPort) http=\(endpoints.httpPort)")
            let answer = try await httpRequest("POST", "/admin/tls/reload", port: endpoints.httpPort)
            #expect(answer.status == 409)
            #expect(answer.json["field"] as? String == "tls.enabled")
        }
        #expect(
            !FileManager.default.fileExists(atPath: TLSMaterial.GeneratedFiles(dataDirectory: directory.path).directory)
        )
    }

    // MARK: reload

    @Test("reload: a good certificate is taken by new connections, a bad one keeps the current one")
    func reloadGoodAndBad() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try SelfSignedCertificate.make()
        let second = try SelfSignedCertificate.make()
        let certificateFile = try directory.write("server.pem", first.certificate)
        let keyFile = try directory.write("server-key.pem", first.privateKey)
        let firstPin = try directory.write("first.pem", first.certificate)
        let secondPin = try directory.write("second.pem", second.certificate)
        let configuration = testConfiguration(dataDirectory: directory.file("data")) {
            $0.tls.certificate = certificateFile
            $0.tls.privateKey = keyFile
        }
        let logs = RecordedLogs()
        try await withServer(configuration, logger: logs.logger) { endpoints in
            let established = try tlsClient(endpoints, trusting: try pinning(firstPin))
            #expect(try await established.connect().reasonCode == .success)

            // A good new pair, through the endpoint.
            _ = try directory.write("server.pem", second.certificate)
            _ = try directory.write("server-key.pem", second.privateKey)
            let answer = try await httpRequest("POST", "/admin/tls/reload", port: endpoints.httpPort)
            #expect(answer.status == 200)
            let secondFingerprint = try fingerprint(ofPEM: second.certificate)
            #expect(answer.json["fingerprint"] as? String == secondFingerprint)
            #expect(logs.lines("TLS certificate reloaded").last?.metadata["tls.fingerprint"] == secondFingerprint)

            let oldTrust = try tlsClient(endpoints, trusting: try pinning(firstPin))
            await #expect(throws: MQTTClientError.self) { try await oldTrust.connect() }
            let newTrust = try tlsClient(endpoints, trusting: try pinning(secondPin))
            #expect(try await newTrust.connect().reasonCode == .success)
            let newTrustWSS = try tlsClient(endpoints, trusting: try pinning(secondPin), webSocket: true)
            #expect(try await newTrustWSS.connect().reasonCode == .success)
            // The connection made before the reload carries on.
            try await expectDelivery(from: established, to: newTrust)

            // A key that does not match: 500 naming tls.private_key, the second certificate stays.
            _ = try directory.write("server-key.pem", first.privateKey)
            let refused = try await httpRequest("POST", "/admin/tls/reload", port: endpoints.httpPort)
            #expect(refused.status == 500)
            #expect(refused.contentType == "application/problem+json")
            #expect(refused.json["field"] as? String == "tls.private_key")
            #expect(refused.json["type"] as? String == "urn:meridian:problem:tls-reload-failed")
            #expect((refused.json["detail"] as? String)?.contains("is not the private key of the certificate") == true)
            #expect(logs.lines("TLS reload failed; keeping the current certificate").count == 1)

            // Garbage in the certificate file: same.
            _ = try directory.write("server-key.pem", second.privateKey)
            _ = try directory.write("server.pem", "not a certificate\n")
            let garbage = try await httpRequest("POST", "/admin/tls/reload", port: endpoints.httpsPort ?? 0)
            #expect(garbage.status == 0)  // the HTTPS port needs TLS: the plain request gets no HTTP answer
            let garbageOverHTTP = try await httpRequest("POST", "/admin/tls/reload", port: endpoints.httpPort)
            #expect(garbageOverHTTP.status == 500)
            #expect(garbageOverHTTP.json["field"] as? String == "tls.certificate")

            let stillSecond = try tlsClient(endpoints, trusting: try pinning(secondPin))
            #expect(try await stillSecond.connect().reasonCode == .success)
            #expect(established.isConnected)
            for client in [established, newTrust, newTrustWSS, stillSecond] { try await client.disconnect() }
        }
    }

    @Test("reload of the generated certificate picks up replaced files in <data_dir>/tls")
    func reloadGeneratedFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let logs = RecordedLogs()
        let service = try TLSService(configuration: .init(), dataDirectory: directory.path, logger: logs.logger)
        let before = service.material.fingerprint
        let replacement = try SelfSignedCertificate.make()
        let files = TLSMaterial.GeneratedFiles(dataDirectory: directory.path)
        try Data(replacement.privateKey.utf8).write(to: URL(fileURLWithPath: files.privateKey))
        try Data(replacement.certificate.utf8).write(to: URL(fileURLWithPath: files.certificate))
        let after = try service.reload().fingerprint
        #expect(after != before)
        #expect(after == (try fingerprint(ofPEM: replacement.certificate)))
        #expect(service.material.fingerprint == after)
    }

    // MARK: configuration errors

    @Test("a missing, unreadable or mismatched certificate, key or CA stops start-up naming the key")
    func startupErrorsNameTheKey() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let pair = try SelfSignedCertificate.make()
        let other = try SelfSignedCertificate.make()
        let certificate = try directory.write("cert.pem", pair.certificate)
        let key = try directory.write("key.pem", pair.privateKey)
        let otherKey = try directory.write("other-key.pem", other.privateKey)
        let garbage = try directory.write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n"
        )
        let empty = try directory.write("empty.pem", "")
        let missing = directory.file("missing.pem")
        let cases: [(MeridianConfiguration.TLS, String)] = [
            (tls(certificate: missing, key: key), "tls.certificate: \(missing) does not exist"),
            (tls(certificate: certificate, key: missing), "tls.private_key: \(missing) does not exist"),
            (
                tls(certificate: certificate, key: otherKey),
                "tls.private_key: \(otherKey) is not the private key of the certificate in \(certificate)"
            ),
            (tls(certificate: empty, key: key), "tls.certificate: \(empty): holds no PEM certificate"),
            (tls(certificate: certificate, key: certificate), "tls.private_key: \(certificate): not a PEM private key"),
            (
                tls(certificate: directory.path, key: key),
                "tls.certificate: \(directory.path) cannot be read: it is a directory"
            ),
            (tls(certificate: certificate, key: key, clientCA: missing), "tls.client_ca: \(missing) does not exist"),
            (tls(certificate: certificate, key: key, clientCA: key), "tls.client_ca: \(key): holds no PEM certificate"),
        ]
        for (configuration, message) in cases {
            let error = #expect(throws: TLSSetupError.self) {
                try TLSService(configuration: configuration, dataDirectory: directory.file("data"), logger: quiet)
            }
            #expect(
                error?.description.hasPrefix(message) == true,
                "\(error?.description ?? "no error"), expected \(message)"
            )
        }
        let garbageError = #expect(throws: TLSSetupError.self) {
            try TLSService(
                configuration: tls(certificate: garbage, key: key),
                dataDirectory: directory.file("data"),
                logger: quiet
            )
        }
        #expect(garbageError?.key == "tls.certificate")

        // The whole server: the same error, before any port is bound.
        var configuration = testConfiguration(dataDirectory: directory.file("data"))
        configuration.tls = tls(certificate: certificate, key: missing)
        let app = MeridianApplication(configuration: configuration, logger: quiet)
        let startup = await #expect(throws: TLSSetupError.self) {
            try await app.run(gracefulShutdownSignals: [], onListening: { _ in })
        }
        #expect(startup?.description == "tls.private_key: \(missing) does not exist")
    }

    @Test("settings that go together: a certificate with its key, client verification with a CA")
    func settingsThatGoTogether() {
        let cases: [(MeridianConfiguration.TLS, String)] = [
            (
                tls(certificate: "/etc/meridian/cert.pem", key: ""),
                "tls.private_key: must be set when tls.certificate is"
            ),
            (
                tls(certificate: "", key: "/etc/meridian/key.pem"),
                "tls.certificate: must be set when tls.private_key is"
            ),
            (
                {
                    var tls = MeridianConfiguration.TLS(); tls.clientAuthentication = .required; return tls
                }(),
                "tls.client_ca: must be set when tls.client_auth is required"
            ),
        ]
        for (configuration, message) in cases {
            let error = #expect(throws: TLSSetupError.self) {
                try TLSMaterial.load(configuration, dataDirectory: "/nonexistent", logger: quiet)
            }
            #expect(error?.description.hasPrefix(message) == true, "\(error?.description ?? "no error")")
        }
    }

    @Test("the TLS listeners' ports are checked against the others, unless TLS is off")
    func portConflicts() {
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(toml: "[network]\nmqtts_port = 9000\nhttps_port = 9000", path: "m.toml")
            } == [
                "network.https_port = 9000 (m.toml line 3) is the same as network.mqtts_port (m.toml line 2): "
                    + "the two listeners need different ports"
            ]
        )
        #expect(
            problems { () throws(InvalidConfiguration) in
                try MeridianConfiguration.load(toml: "[network]\nmqtt_port = 8443", path: "m.toml")
            } == [
                "network.mqtt_port = 8443 (m.toml line 2) is the same as network.https_port (default): "
                    + "the two listeners need different ports"
            ]
        )
        let disabled = "[network]\nmqtts_port = 1883\n[tls]\nenabled = false"
        #expect((try? MeridianConfiguration.load(toml: disabled, path: "m.toml")) != nil)
    }

    @Test("the admin reload endpoint answers loopback clients only")
    func loopbackOnly() {
        #expect(TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "127.0.0.1", port: 1)))
        #expect(TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "127.8.9.10", port: 1)))
        #expect(TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "::1", port: 1)))
        #expect(TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "::ffff:127.0.0.1", port: 1)))
        #expect(!TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "10.0.0.1", port: 1)))
        #expect(!TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "::2", port: 1)))
        #expect(!TLSAdminRoutes.isLoopback(try! SocketAddress(ipAddress: "128.0.0.1", port: 1)))
    }

    private func tls(certificate: String, key: String, clientCA: String = "") -> MeridianConfiguration.TLS {
        var tls = MeridianConfiguration.TLS()
        tls.certificate = certificate
        tls.privateKey = key
        tls.clientCA = clientCA
        return tls
    }

    private func fingerprint(ofPEM pem: String) throws -> String {
        let der = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))[0].toDERBytes()
        return MQTTPeerCertificate.sha256Fingerprint(of: der)
    }
}
