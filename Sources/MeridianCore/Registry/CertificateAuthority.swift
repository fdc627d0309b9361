import Foundation

/// A tenant's certificate authority: the built-in one (P-256, generated on first use, key kept
/// by Meridian) or one the tenant registered (certificate only; Meridian cannot sign with it but
/// accepts device certificates it issued).
public struct CertificateAuthority: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case builtIn = "built-in"
        case external
    }

    public var id: String
    public var tenantID: String
    public var kind: Kind
    public var certificatePEM: String
    /// PKCS#8 PEM of the signing key (built-in only). Never shown.
    public var privateKeyPEM: String?
    /// SHA-256 (hex) of the DER certificate.
    public var fingerprint: String
    public var subject: String
    public var createdAt: Date

    public init(
        id: String, tenantID: String, kind: Kind, certificatePEM: String, privateKeyPEM: String?, fingerprint: String,
        subject: String, createdAt: Date
    ) {
        self.id = id
        self.tenantID = tenantID
        self.kind = kind
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.fingerprint = fingerprint
        self.subject = subject
        self.createdAt = createdAt
    }
}

/// How a verified client certificate is mapped to a device.
public enum CertificateMapping: String, Sendable, Hashable, Codable, CaseIterable {
    /// By the certificate's SHA-256 fingerprint, registered as a credential.
    case fingerprint
    /// By its subject common name, which must be the device id (issued by one of the tenant's CAs).
    case commonName = "common-name"
}
