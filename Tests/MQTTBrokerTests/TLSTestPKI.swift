import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import SwiftASN1
import X509

/// A throwaway certificate authority, made in memory with swift-certificates, that issues server
/// and client certificates for the TLS tests.
struct TestAuthority: Sendable {
    let certificate: Certificate
    let key: P256.Signing.PrivateKey

    init(name: String) throws {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("Meridian Tests")
            CommonName(name)
        }
        let now = Date()
        certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(24 * 3600),
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
            },
            issuerPrivateKey: .init(key)
        )
        self.key = key
    }

    /// A leaf certificate signed by this authority.
    func issue(commonName: String, names: [GeneralName], usage: ExtendedKeyUsage.Usage) throws -> TestIdentity {
        let leafKey = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("Meridian Tests")
            CommonName(commonName)
        }
        let now = Date()
        let leaf = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(leafKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(24 * 3600),
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(key)
        )
        return TestIdentity(certificate: leaf, key: leafKey)
    }

    /// The authority as a swift-nio-ssl trust root.
    var trustRoot: NIOSSLCertificate {
        get throws { try NIOSSLCertificate(bytes: certificate.derBytes, format: .der) }
    }
}

/// A certificate with its private key.
struct TestIdentity: Sendable {
    let certificate: Certificate
    let key: P256.Signing.PrivateKey

    var der: [UInt8] { (try? certificate.derBytes) ?? [] }

    var nioCertificate: NIOSSLCertificate {
        get throws { try NIOSSLCertificate(bytes: certificate.derBytes, format: .der) }
    }

    var nioKey: NIOSSLPrivateKey {
        get throws { try NIOSSLPrivateKey(bytes: Array(key.derRepresentation), format: .der) }
    }
}

extension Certificate {
    var derBytes: [UInt8] {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(self)
            return serializer.serializedBytes
        }
    }
}

/// The certificates of one TLS test: a CA with a server certificate for localhost and a client
/// certificate, and a second, untrusted CA with a client certificate of its own.
struct TestPKI: Sendable {
    let authority: TestAuthority
    let server: TestIdentity
    let client: TestIdentity
    let stranger: TestAuthority
    let strangerClient: TestIdentity

    init() throws {
        authority = try TestAuthority(name: "Meridian Test CA")
        server = try authority.issue(
            commonName: "localhost",
            names: [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))],
            usage: .serverAuth
        )
        client = try authority.issue(
            commonName: "device-42",
            names: [.dnsName("device-42.example"), .uniformResourceIdentifier("urn:meridian:device:42")],
            usage: .clientAuth
        )
        stranger = try TestAuthority(name: "Someone Else's CA")
        strangerClient = try stranger.issue(
            commonName: "device-42",
            names: [.dnsName("device-42.example")],
            usage: .clientAuth
        )
    }

    /// The broker's TLS configuration: the server certificate, TLS 1.2+, and client
    /// certificates verified against `authority` as `verification` says.
    func serverConfiguration(verification: CertificateVerification = .none) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try server.nioCertificate)],
            privateKey: .privateKey(try server.nioKey)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = verification
        configuration.trustRoots = .certificates([try authority.trustRoot])
        configuration.sendCANameList = true
        return configuration
    }

    /// A client configuration trusting `trusting` (default: the test CA), presenting `identity`.
    func clientConfiguration(
        presenting identity: TestIdentity? = nil,
        trusting: TestAuthority? = nil
    ) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates([try (trusting ?? authority).trustRoot])
        if let identity {
            configuration.certificateChain = [.certificate(try identity.nioCertificate)]
            configuration.privateKey = .privateKey(try identity.nioKey)
        }
        return configuration
    }
}

/// Keeps the broker's log lines so tests can check what an operator would see.
final class LogRecorder: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let entries = NIOLockedValueBox<[Entry]>([])

    var logger: Logger {
        var logger = Logger(label: "tls-test") { _ in Handler(recorder: self) }
        logger.logLevel = .info
        return logger
    }

    func lines(_ message: String) -> [Entry] {
        entries.withLockedValue { $0.filter { $0.message == message } }
    }

    fileprivate func append(_ entry: Entry) {
        entries.withLockedValue { $0.append(entry) }
    }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let extra = event.metadata { all.merge(extra) { $1 } }
            recorder.append(
                Entry(level: event.level, message: "\(event.message)", metadata: all.mapValues { "\($0)" })
            )
        }
    }
}
