import Crypto
import Foundation
import SwiftASN1
import X509

/// The server certificate Meridian makes for itself when none is configured: P-256, self-signed,
/// for `localhost`, 127.0.0.1, ::1 and the machine's host name, valid for two years.
///
/// Clients trust it by pinning it (using the certificate file as their CA file).
enum SelfSignedCertificate {
    /// How long a generated certificate is valid.
    static let validity: TimeInterval = 2 * 365 * 24 * 3600

    /// A new certificate and its private key, both PEM (the key as PKCS #8).
    static func make(
        hostname: String = currentHostname(),
        now: Date = Date()
    ) throws -> (certificate: String, privateKey: String) {
        let swiftCryptoKey = P256.Signing.PrivateKey()
        let key = Certificate.PrivateKey(swiftCryptoKey)
        let name = try DistinguishedName {
            OrganizationName("Meridian")
            CommonName(hostname.isEmpty ? "localhost" : hostname)
        }
        var alternativeNames: [GeneralName] = [
            .dnsName("localhost"),
            .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
            .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))),
        ]
        if isDNSName(hostname), hostname.lowercased() != "localhost" {
            alternativeNames.insert(.dnsName(hostname), at: 1)
        }
        // Marked as a (path-length 0) authority with keyCertSign, like `openssl req -x509` makes
        // them: BoringSSL (and so swift-nio-ssl clients) accepts a self-signed certificate as
        // its own trust anchor only then; OpenSSL accepts either.
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(alternativeNames)
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(validity),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: key
        )
        return (try certificate.serializeAsPEM().pemString, swiftCryptoKey.pemRepresentation)
    }

    /// The machine's host name, as `gethostname` reports it ("" when it cannot).
    static func currentHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `name` can stand in a DNS subject alternative name (letters, digits, `-`, `.`).
    private static func isDNSName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 253
            && name.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                    || byte == UInt8(ascii: ".")
            }
    }
}
