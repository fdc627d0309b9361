import Crypto
import NIOCore
import NIOSSL
import SwiftASN1
import X509

extension MQTTPeerCertificate {
    /// Describes a DER-encoded certificate as the authenticator sees it: the subject in RFC 4514
    /// form (`CN=device-1,O=Example`), the subject's common name, the subject alternative names
    /// (`DNS:…`, `IP:…`, `URI:…`, `email:…`, `DirName:…`), and the SHA-256 fingerprint of the DER
    /// bytes in lower-case hex.
    ///
    /// - Throws: when the bytes are not a certificate swift-certificates can parse.
    public convenience init(derBytes: [UInt8]) throws {
        let certificate = try Certificate(derEncoded: derBytes)
        self.init(
            subject: Self.rfc4514(certificate.subject),
            commonName: Self.commonName(of: certificate.subject),
            subjectAlternativeNames: Self.alternativeNames(of: certificate),
            sha256Fingerprint: Self.sha256Fingerprint(of: derBytes),
            der: derBytes
        )
    }

    /// Describes a certificate handed over by swift-nio-ssl.
    public convenience init(_ certificate: NIOSSLCertificate) throws {
        try self.init(derBytes: certificate.toDERBytes())
    }

    /// The client certificate the TLS handler of `channel` verified during the handshake, or nil
    /// when the client presented none (or the channel has no TLS). Call it on the channel's event
    /// loop, after the handshake.
    ///
    /// The TLS handler only ever holds a *verified* client certificate: listeners that do not
    /// verify client certificates do not ask for one, and those that do fail the handshake when
    /// it does not chain to their authorities.
    ///
    /// - Throws: when a certificate is there but cannot be parsed.
    public static func verifiedPeer(of channel: any Channel) throws -> MQTTPeerCertificate? {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: NIOSSLHandler.self),
            let certificate = handler.peerCertificate
        else { return nil }
        return try MQTTPeerCertificate(certificate)
    }

    /// Lower-case hex SHA-256 of `der`, as in ``sha256Fingerprint``.
    public static func sha256Fingerprint(of der: [UInt8]) -> String {
        SHA256.hash(data: der).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// RFC 4514 string form: the most specific RDN first, multi-valued RDNs joined with `+`,
    /// attribute types by their short names (CN, O, …) or dotted OID.
    static func rfc4514(_ name: DistinguishedName) -> String {
        name.reversed().map { rdn in
            rdn.map { attribute in "\(shortName(of: attribute.type))=\(attribute.value)" }.joined(separator: "+")
        }.joined(separator: ",")
    }

    private static func shortName(of type: ASN1ObjectIdentifier) -> String {
        switch type {
        case .RDNAttributeType.commonName: "CN"
        case .RDNAttributeType.countryName: "C"
        case .RDNAttributeType.localityName: "L"
        case .RDNAttributeType.stateOrProvinceName: "ST"
        case .RDNAttributeType.organizationName: "O"
        case .RDNAttributeType.organizationalUnitName: "OU"
        case .RDNAttributeType.streetAddress: "STREET"
        case .RDNAttributeType.domainComponent: "DC"
        case [0, 9, 2342, 19_200_300, 100, 1, 1]: "UID"
        default: type.description
        }
    }

    private static func commonName(of name: DistinguishedName) -> String? {
        // The most specific CN, as TLS libraries read it.
        for rdn in name.reversed() {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let text = String(attribute.value) { return text }
            }
        }
        return nil
    }

    private static func alternativeNames(of certificate: Certificate) -> [String] {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { name -> String? in
            switch name {
            case .dnsName(let dns):
                return "DNS:" + dns
            case .ipAddress(let octets):
                let bytes = Array(octets.bytes)
                guard bytes.count == 4 || bytes.count == 16,
                    let address = try? SocketAddress(packedIPAddress: ByteBuffer(bytes: bytes), port: 0).ipAddress
                else { return nil }
                return "IP:" + address
            case .uniformResourceIdentifier(let uri):
                return "URI:" + uri
            case .rfc822Name(let email):
                return "email:" + email
            case .directoryName(let directory):
                return "DirName:" + rfc4514(directory)
            default:
                return nil
            }
        }
    }
}
