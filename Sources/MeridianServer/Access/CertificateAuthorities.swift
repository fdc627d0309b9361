import Foundation
import MQTTBroker
import NIOConcurrencyHelpers
import NIOSSL
import SwiftASN1
import X509

/// The tenants' certificate authorities, as the MQTT TLS listener trusts them: kept up to date
/// from the registry, handed to the TLS service as client-certificate trust roots, and used to
/// name the CA that issued a client certificate (for the registry's common-name mapping).
final class CertificateAuthorities: Sendable {
    struct Authority: Sendable {
        var certificate: Certificate
        var nioCertificate: NIOSSLCertificate
        /// SHA-256 of the DER, lower-case hex.
        var fingerprint: String
    }

    private let authorities = NIOLockedValueBox<[Authority]>([])

    /// The authorities now trusted.
    var current: [Authority] { authorities.withLockedValue { $0 } }

    /// Replaces the authorities with those in `pems` (each may hold several certificates);
    /// certificates that do not parse are skipped and reported. Returns whether the set changed.
    @discardableResult
    func replace(withPEMs pems: [String], skipped: (String) -> Void = { _ in }) -> Bool {
        var parsed: [Authority] = []
        var seen: Set<String> = []
        for pem in pems {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
            } catch {
                skipped("not a PEM certificate: \(error)")
                continue
            }
            for certificate in certificates {
                do {
                    let der = try certificate.toDERBytes()
                    let fingerprint = MQTTPeerCertificate.sha256Fingerprint(of: der)
                    guard seen.insert(fingerprint).inserted else { continue }
                    parsed.append(
                        Authority(certificate: try Certificate(derEncoded: der), nioCertificate: certificate, fingerprint: fingerprint)
                    )
                } catch {
                    skipped("certificate does not parse: \(error)")
                }
            }
        }
        let fingerprints = parsed.map(\.fingerprint)
        return authorities.withLockedValue { current in
            let changed = current.map(\.fingerprint) != fingerprints
            current = parsed
            return changed
        }
    }

    /// The fingerprint of the authority that signed the DER certificate `der`, if it is one of
    /// these.
    func issuerFingerprint(of der: [UInt8]) -> String? {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        for authority in current where authority.certificate.subject == certificate.issuer {
            if authority.certificate.publicKey.isValidSignature(certificate.signature, for: certificate) {
                return authority.fingerprint
            }
        }
        return nil
    }
}
