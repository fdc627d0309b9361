import Crypto
import Foundation
import SwiftASN1
import X509

/// Certificate work for the registry: the tenants' built-in CAs, issuing device certificates,
/// and checking certificates registered from elsewhere. No storage access.
enum TenantCertificates {
    /// Validity of a built-in CA.
    static let caValidityDays = 3650
    /// Default validity of a device certificate.
    static let defaultDeviceValidityDays = 365
    /// Issued certificates start a little in the past, for devices whose clocks run behind.
    static let backdating: TimeInterval = 300

    /// A new built-in CA for `tenant`: a P-256 key and a self-signed certificate,
    /// CN "Meridian <tenant name> CA", valid 10 years.
    static func makeBuiltInAuthority(for tenant: Tenant, now: Date) throws -> CertificateAuthority {
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let subject = try DistinguishedName {
            OrganizationName("Meridian")
            CommonName("Meridian \(tenant.name) CA")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: privateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-backdating),
            notValidAfter: now.addingTimeInterval(Double(caValidityDays) * 86_400),
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: privateKey.publicKey)
            },
            issuerPrivateKey: privateKey
        )
        return CertificateAuthority(
            id: MeridianID.generate(),
            tenantID: tenant.id,
            kind: .builtIn,
            certificatePEM: try certificate.serializeAsPEM().pemString,
            privateKeyPEM: key.pemRepresentation,
            fingerprint: try fingerprint(certificate),
            subject: certificate.subject.description,
            createdAt: now
        )
    }

    /// A CA the tenant runs itself, from its certificate (PEM): must be a CA certificate that has
    /// not expired.
    static func externalAuthority(pem: String, tenantID: String, now: Date) throws -> CertificateAuthority {
        let certificate = try certificate(pem: pem, field: "certificate")
        guard isCertificateAuthority(certificate) else {
            throw RegistryError.invalid("certificate", "not a CA certificate (basic constraints do not allow signing certificates)")
        }
        guard certificate.notValidAfter > now else { throw RegistryError.invalid("certificate", "the certificate has expired") }
        return CertificateAuthority(
            id: MeridianID.generate(), tenantID: tenantID, kind: .external,
            certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: nil,
            fingerprint: try fingerprint(certificate), subject: certificate.subject.description, createdAt: now
        )
    }

    /// A client certificate for `publicKey`, subject CN = `commonName`, signed by the built-in
    /// `authority`.
    static func issue(
        publicKey: Certificate.PublicKey, commonName: String, validityDays: Int, authority: CertificateAuthority, now: Date
    ) throws -> Certificate {
        guard let keyPEM = authority.privateKeyPEM else {
            throw RegistryError(.conflict, "the certificate authority cannot sign (no key)")
        }
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        let caPrivateKey = Certificate.PrivateKey(caKey)
        let caCertificate = try Certificate(pemEncoded: authority.certificatePEM)
        let subject = try DistinguishedName { CommonName(commonName) }
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-backdating),
            notValidAfter: min(now.addingTimeInterval(Double(validityDays) * 86_400), caCertificate.notValidAfter),
            issuer: caCertificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: caPrivateKey.publicKey).keyIdentifier)
            },
            issuerPrivateKey: caPrivateKey
        )
    }

    /// Parses a CSR and checks its signature (proof that the requester holds the key).
    static func verifiedSigningRequest(pem: String) throws -> CertificateSigningRequest {
        let request: CertificateSigningRequest
        do {
            request = try CertificateSigningRequest(pemEncoded: pem)
        } catch {
            throw RegistryError.invalid("csr", "not a PEM certificate signing request")
        }
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw RegistryError.invalid("csr", "the certificate signing request's signature does not verify")
        }
        return request
    }

    /// Parses a PEM certificate; `field` names the input in errors.
    static func certificate(pem: String, field: String) throws -> Certificate {
        do {
            return try Certificate(pemEncoded: pem)
        } catch {
            throw RegistryError.invalid(field, "not a PEM certificate")
        }
    }

    /// Whether `authority`'s certificate issued (signed) `certificate`.
    static func isIssued(_ certificate: Certificate, by authority: CertificateAuthority) -> Bool {
        guard let caCertificate = try? Certificate(pemEncoded: authority.certificatePEM) else { return false }
        return certificate.issuer == caCertificate.subject
            && caCertificate.publicKey.isValidSignature(certificate.signature, for: certificate)
    }

    /// Whether `certificate` is a CA certificate (basic constraints say so).
    static func isCertificateAuthority(_ certificate: Certificate) -> Bool {
        guard let constraints = try? certificate.extensions.basicConstraints else { return false }
        if case .isCertificateAuthority = constraints { return true }
        return false
    }

    /// Lower-case hex SHA-256 of the DER encoding.
    static func fingerprint(_ certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return SHA256.hash(data: serializer.serializedBytes).hexString
    }

    /// The first common name of `name`.
    static func commonName(_ name: DistinguishedName) -> String? {
        for relativeName in name {
            for attribute in relativeName where attribute.type == .RDNAttributeType.commonName {
                return String(attribute.value)
            }
        }
        return nil
    }
}
