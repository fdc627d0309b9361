import Foundation
import Logging
import MQTTBroker
import NIOSSL
import SwiftASN1
import X509

/// The server's certificate chain, its private key and the client certificate authorities, read
/// from their files and checked against each other.
///
/// With no `tls.certificate` configured, the certificate is the self-signed one in
/// `<data_dir>/tls` (``SelfSignedCertificate``), made when it is not there yet.
struct TLSMaterial: Sendable {
    /// The server certificate first, then any intermediates.
    var certificateChain: [NIOSSLCertificate]
    var privateKey: NIOSSLPrivateKey
    /// Authorities client certificates must chain to (empty when `tls.client_ca` is not set).
    var clientAuthorities: [NIOSSLCertificate]
    /// SHA-256 of the server certificate's DER, lower-case hex.
    var fingerprint: String
    /// The server certificate's subject, RFC 4514.
    var subject: String
    var notValidAfter: Date
    /// The file the server certificate was read from.
    var certificatePath: String
    /// Whether the certificate is the generated self-signed one.
    var isSelfSigned: Bool

    /// The files of the generated self-signed certificate.
    struct GeneratedFiles: Sendable {
        var directory: String
        var certificate: String
        var privateKey: String

        init(dataDirectory: String) {
            directory = (dataDirectory as NSString).appendingPathComponent("tls")
            certificate = (directory as NSString).appendingPathComponent("server.crt")
            privateKey = (directory as NSString).appendingPathComponent("server.key")
        }
    }

    /// Reads (and with no configured certificate, first generates) the TLS material.
    ///
    /// - Parameter renewExpired: replace a generated certificate that has expired (at start-up).
    /// - Throws: ``TLSSetupError`` naming the configuration key and file at fault.
    static func load(
        _ tls: MeridianConfiguration.TLS,
        dataDirectory: String,
        renewExpired: Bool = false,
        logger: Logger
    ) throws(TLSSetupError) -> TLSMaterial {
        try checkSettings(tls)
        var certificatePath = tls.certificate
        var keyPath = tls.privateKey
        let selfSigned = tls.certificate.isEmpty
        if selfSigned {
            let files = GeneratedFiles(dataDirectory: dataDirectory)
            try ensureGenerated(files, renewExpired: renewExpired, logger: logger)
            certificatePath = files.certificate
            keyPath = files.privateKey
        }

        let certificateBytes = try read(certificatePath, key: "tls.certificate")
        guard Self.containsPEM(certificateBytes, label: "CERTIFICATE") else {
            throw .invalidCertificate(key: "tls.certificate", path: certificatePath, reason: "holds no PEM certificate")
        }
        let chain: [NIOSSLCertificate]
        let leaf: Certificate
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(certificateBytes)
            guard let first = chain.first else {
                throw TLSSetupError.invalidCertificate(
                    key: "tls.certificate",
                    path: certificatePath,
                    reason: "holds no PEM certificate"
                )
            }
            leaf = try Certificate(derEncoded: first.toDERBytes())
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw .invalidCertificate(
                key: "tls.certificate",
                path: certificatePath,
                reason: "not a PEM certificate (\(error))"
            )
        }

        let keyBytes = try read(keyPath, key: "tls.private_key")
        let keyText = String(decoding: keyBytes, as: UTF8.self)
        if keyText.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || keyText.contains("Proc-Type: 4,ENCRYPTED") {
            throw .invalidPrivateKey(
                key: "tls.private_key",
                path: keyPath,
                reason: "is encrypted; Meridian needs an unencrypted key"
            )
        }
        let privateKey: NIOSSLPrivateKey
        let certificateKey: Certificate.PrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
            certificateKey = try Certificate.PrivateKey(pemEncoded: keyText)
        } catch {
            throw .invalidPrivateKey(key: "tls.private_key", path: keyPath, reason: "not a PEM private key (\(error))")
        }
        guard certificateKey.publicKey == leaf.publicKey else {
            throw .keyMismatch(key: "tls.private_key", path: keyPath, certificatePath: certificatePath)
        }

        var authorities: [NIOSSLCertificate] = []
        if !tls.clientCA.isEmpty {
            let caBytes = try read(tls.clientCA, key: "tls.client_ca")
            guard Self.containsPEM(caBytes, label: "CERTIFICATE") else {
                throw .invalidClientCA(key: "tls.client_ca", path: tls.clientCA, reason: "holds no PEM certificate")
            }
            do {
                authorities = try NIOSSLCertificate.fromPEMBytes(caBytes)
            } catch {
                throw .invalidClientCA(
                    key: "tls.client_ca",
                    path: tls.clientCA,
                    reason: "not a PEM certificate bundle (\(error))"
                )
            }
            guard !authorities.isEmpty else {
                throw .invalidClientCA(key: "tls.client_ca", path: tls.clientCA, reason: "holds no PEM certificate")
            }
        }

        let description = try? MQTTPeerCertificate(chain[0])
        return TLSMaterial(
            certificateChain: chain,
            privateKey: privateKey,
            clientAuthorities: authorities,
            fingerprint: description?.sha256Fingerprint ?? "",
            subject: description?.subject ?? "",
            notValidAfter: leaf.notValidAfter,
            certificatePath: certificatePath,
            isSelfSigned: selfSigned
        )
    }

    /// The swift-nio-ssl server configuration: this certificate and key, TLS 1.2 and 1.3 only,
    /// and client certificates requested as `clientAuthentication` says (verified against the
    /// client authorities only, never the system's trust store).
    func serverConfiguration(clientAuthentication: MeridianConfiguration.TLS.ClientAuthentication) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) },
            privateKey: .privateKey(privateKey)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        configuration.additionalTrustRoots = []
        switch clientAuthentication {
        case .none:
            configuration.certificateVerification = .none
        case .optional:
            configuration.certificateVerification = .optionalVerification
            configuration.trustRoots = .certificates(clientAuthorities)
            configuration.sendCANameList = true
        case .required:
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(clientAuthorities)
            configuration.sendCANameList = true
        }
        return configuration
    }

    /// The settings that go together: a certificate with its key, client verification with
    /// the authorities to verify against.
    private static func checkSettings(_ tls: MeridianConfiguration.TLS) throws(TLSSetupError) {
        if tls.certificate.isEmpty && !tls.privateKey.isEmpty {
            throw .missingSetting(key: "tls.certificate", reason: "must be set when tls.private_key is (the two go together)")
        }
        if !tls.certificate.isEmpty && tls.privateKey.isEmpty {
            throw .missingSetting(key: "tls.private_key", reason: "must be set when tls.certificate is (the two go together)")
        }
        if tls.clientAuthentication != .none && tls.clientCA.isEmpty {
            throw .missingSetting(
                key: "tls.client_ca",
                reason: "must be set when tls.client_auth is \(tls.clientAuthentication.rawValue): "
                    + "client certificates are verified against it"
            )
        }
    }

    /// Whether `bytes` hold a `-----BEGIN <label>-----` line.
    private static func containsPEM(_ bytes: [UInt8], label: String) -> Bool {
        String(decoding: bytes, as: UTF8.self).contains("-----BEGIN \(label)-----")
    }

    // MARK: Files

    /// Makes the self-signed certificate when it (or its key) is missing, or — with
    /// `renewExpired` — when it has expired.
    private static func ensureGenerated(
        _ files: GeneratedFiles,
        renewExpired: Bool,
        logger: Logger
    ) throws(TLSSetupError) {
        let manager = FileManager.default
        let haveCertificate = manager.fileExists(atPath: files.certificate)
        let haveKey = manager.fileExists(atPath: files.privateKey)
        if haveCertificate && haveKey {
            guard renewExpired, let expiry = expiryDate(ofPEMFile: files.certificate), expiry < Date() else { return }
            logger.warning(
                "the self-signed TLS certificate has expired; making a new one",
                metadata: ["tls.certificate": "\(files.certificate)"]
            )
        } else if haveCertificate || haveKey {
            logger.warning(
                "half of the self-signed TLS certificate pair is missing; making a new pair",
                metadata: ["tls.certificate": "\(files.certificate)", "tls.private_key": "\(files.privateKey)"]
            )
        }
        let generated: (certificate: String, privateKey: String)
        do {
            generated = try SelfSignedCertificate.make()
        } catch {
            throw .generationFailed(path: files.directory, reason: "\(error)")
        }
        do {
            try manager.createDirectory(
                atPath: files.directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
            try writeFile(files.privateKey, contents: generated.privateKey, mode: 0o600)
            try writeFile(files.certificate, contents: generated.certificate, mode: 0o644)
        } catch {
            throw .generationFailed(path: files.directory, reason: "\(error)")
        }
        logger.info(
            "generated a self-signed TLS certificate",
            metadata: [
                "tls.certificate": "\(files.certificate)",
                "tls.names": "localhost, 127.0.0.1, ::1, \(SelfSignedCertificate.currentHostname())",
            ]
        )
    }

    private static func expiryDate(ofPEMFile path: String) -> Date? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: text)
        else { return nil }
        return certificate.notValidAfter
    }

    /// Reads a whole file, naming `key` when it is missing or unreadable.
    private static func read(_ path: String, key: String) throws(TLSSetupError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .missingFile(key: key, path: path)
        }
        if isDirectory.boolValue { throw .unreadableFile(key: key, path: path, reason: "it is a directory") }
        guard access(path, R_OK) == 0 else {
            throw .unreadableFile(key: key, path: path, reason: String(cString: strerror(errno)))
        }
        do {
            return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw .unreadableFile(key: key, path: path, reason: "\(error.localizedDescription)")
        }
    }

    /// Writes `contents` to a temporary file created with `mode`, then renames it over `path`,
    /// so the file is never seen half-written nor, for a key, with wider permissions.
    private static func writeFile(_ path: String, contents: String, mode: mode_t) throws {
        struct WriteError: Error, CustomStringConvertible {
            var description: String
        }
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard descriptor >= 0 else {
            throw WriteError(description: "\(temporary): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw WriteError(description: "\(path): \(reason)")
        }
    }
}
