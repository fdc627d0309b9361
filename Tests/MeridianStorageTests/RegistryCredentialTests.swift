import Crypto
import Foundation
import MeridianCore
import MeridianStorage
import SwiftASN1
import Testing
import X509

@Suite("Registry: credentials, certificates, device authentication")
struct RegistryCredentialTests {
    @Test("token credentials: hashed, given or generated, refused when revoked, expired, or when the device is not active")
    func tokens() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let caller = fixture.caller(fixture.ownerA, role: .operator)
        let device = try await registry.createDevice(DeviceDraft(name: "meter"), by: caller)

        let generated = try await registry.createCredential(deviceID: device.id, .token(nil), by: caller)
        let token = try #require(generated.token)
        #expect(generated.credential.tokenHash == Secrets.sha256(token))
        let identity = try #require(try await registry.authenticateDevice(token: token))
        #expect(identity == DeviceIdentity(deviceID: device.id, tenantID: fixture.tenantA.id, credentialID: generated.credential.id, credentialType: .token, deviceName: device.name))
        #expect(try await registry.isStillAuthorized(identity))
        #expect(try await registry.authenticateDevice(token: token + "x") == nil)

        let given = try await registry.createCredential(deviceID: device.id, .token("given-token-0123456789", expiresAt: fixture.clock.now.addingTimeInterval(60)), by: caller)
        #expect(given.token == "given-token-0123456789")
        #expect(try await registry.authenticateDevice(token: "given-token-0123456789") != nil)
        await #expect { try await registry.createCredential(deviceID: device.id, .token("given-token-0123456789"), by: caller) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "token")
        }
        await #expect { try await registry.createCredential(deviceID: device.id, .token("short"), by: caller) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "token")
        }
        fixture.clock.advance(61)
        #expect(try await registry.authenticateDevice(token: "given-token-0123456789") == nil)

        _ = try await registry.updateDevice(device.id, DevicePatch(status: .disabled), by: caller)
        #expect(try await registry.authenticateDevice(token: token) == nil)
        #expect(try await registry.isStillAuthorized(identity) == false)
        _ = try await registry.updateDevice(device.id, DevicePatch(status: .active), by: caller)
        #expect(try await registry.authenticateDevice(token: token) != nil)

        try await registry.revokeCredential(deviceID: device.id, credentialID: generated.credential.id, by: caller)
        #expect(try await registry.authenticateDevice(token: token) == nil)
        #expect(try await registry.isStillAuthorized(identity) == false)
        #expect(fixture.recordedChanges().contains(.credentialRevoked(deviceID: device.id, credentialID: generated.credential.id)))
        let listed = try await registry.credentials(deviceID: device.id, by: caller)
        #expect(listed.count == 2)
        #expect(listed.first { $0.id == generated.credential.id }?.revokedAt != nil)
    }

    @Test("password credentials: user names unique, slow hash, wrong password refused")
    func passwords() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let device = try await registry.createDevice(DeviceDraft(name: "gateway"), by: fixture.ownerA)
        let other = try await registry.createDevice(DeviceDraft(name: "gateway-2"), by: fixture.ownerA)
        let issued = try await registry.createCredential(deviceID: device.id, .password(username: "gw-1", password: "s3cret-pass"), by: fixture.ownerA)
        #expect(issued.credential.passwordHash?.hasPrefix("pbkdf2-sha256$") == true)
        #expect(issued.token == nil)
        await #expect { try await registry.createCredential(deviceID: other.id, .password(username: "gw-1", password: "another-pass"), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "username")
        }
        await #expect { try await registry.createCredential(deviceID: other.id, .password(username: "gw-2", password: "short"), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "password")
        }
        #expect(try await registry.authenticateDevice(username: "gw-1", password: "s3cret-pass")?.deviceID == device.id)
        #expect(try await registry.authenticateDevice(username: "gw-1", password: "wrong-pass") == nil)
        #expect(try await registry.authenticateDevice(username: "nobody", password: "s3cret-pass") == nil)
        try await registry.revokeCredential(deviceID: device.id, credentialID: issued.credential.id, by: fixture.ownerA)
        #expect(try await registry.authenticateDevice(username: "gw-1", password: "s3cret-pass") == nil)
    }

    @Test("a CSR is signed by the tenant's built-in CA: CN is the device id, client auth, the chain verifies")
    func signingRequest() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let device = try await registry.createDevice(DeviceDraft(name: "camera"), by: fixture.ownerA)
        let deviceKey = P256.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("whatever the device says") },
            privateKey: Certificate.PrivateKey(deviceKey), attributes: CertificateSigningRequest.Attributes()
        )
        let csrPEM = try csr.serializeAsPEM().pemString
        let issued = try await registry.createCredential(deviceID: device.id, .certificateSigningRequest(pem: csrPEM), by: fixture.ownerA)
        let certificate = try Certificate(pemEncoded: try #require(issued.certificatePEM))
        let ca = try Certificate(pemEncoded: try #require(issued.caCertificatePEM))
        // The built-in CA was created on first use, and observers were told.
        #expect(fixture.recordedChanges().filter { $0 == .certificateAuthorityAdded(tenantID: fixture.ownerA.tenantID) }.count == 1)
        #expect(certificate.subject.description == "CN=\(device.id)")
        #expect(certificate.publicKey == Certificate.PublicKey(deviceKey.publicKey))
        #expect(try certificate.extensions.extendedKeyUsage?.contains(.clientAuth) == true)
        let days = certificate.notValidAfter.timeIntervalSince(fixture.clock.now) / 86_400
        #expect(abs(days - 365) < 0.001)
        #expect(ca.subject.description.contains("CN=Meridian default CA"))
        #expect(try ca.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try ca.extensions.keyUsage?.keyCertSign == true)
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) { RFC5280Policy(validationTime: Date()) }
        let result = await verifier.validate(leaf: certificate, intermediates: CertificateStore())
        guard case .validCertificate = result else {
            Issue.record("the issued certificate does not chain to the tenant CA: \(result)")
            return
        }
        // Fingerprint = hex SHA-256 of the DER.
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let fingerprint = SHA256.hash(data: serializer.serializedBytes).hexString
        #expect(issued.credential.certificateFingerprint == fingerprint)
        #expect(issued.credential.certificateCommonName == device.id)

        // The CA is listed (without its key) and trusted by the TLS listener.
        let authorities = try await registry.certificateAuthorities(by: fixture.ownerA)
        #expect(authorities.count == 1)
        #expect(authorities[0].privateKeyPEM == nil)
        #expect(try await registry.allCertificateAuthorityPEMs() == [authorities[0].certificatePEM])

        // Authentication by fingerprint and by CN + issuer.
        let byFingerprint = try #require(try await registry.authenticateDevice(certificateFingerprint: fingerprint, commonName: device.id, issuerFingerprint: nil, mapping: .fingerprint))
        #expect(byFingerprint.credentialID == issued.credential.id)
        #expect(try await registry.authenticateDevice(certificateFingerprint: fingerprint.uppercased(), commonName: nil, issuerFingerprint: nil, mapping: .fingerprint)?.deviceID == device.id)
        let byName = try #require(
            try await registry.authenticateDevice(certificateFingerprint: String(repeating: "ab", count: 32), commonName: device.id, issuerFingerprint: authorities[0].fingerprint, mapping: .commonName)
        )
        #expect(byName.deviceID == device.id)
        #expect(try await registry.isStillAuthorized(byName))
        #expect(try await registry.authenticateDevice(certificateFingerprint: String(repeating: "ab", count: 32), commonName: device.id, issuerFingerprint: nil, mapping: .commonName) == nil)
        #expect(try await registry.authenticateDevice(certificateFingerprint: String(repeating: "ab", count: 32), commonName: device.id, issuerFingerprint: authorities[0].fingerprint, mapping: .fingerprint) == nil)

        try await registry.revokeCredential(deviceID: device.id, credentialID: issued.credential.id, by: fixture.ownerA)
        #expect(try await registry.authenticateDevice(certificateFingerprint: fingerprint, commonName: device.id, issuerFingerprint: nil, mapping: .fingerprint) == nil)
        #expect(try await registry.authenticateDevice(certificateFingerprint: fingerprint, commonName: device.id, issuerFingerprint: authorities[0].fingerprint, mapping: .commonName) == nil)
    }

    @Test("a CSR whose signature does not verify is refused naming the csr field")
    func forgedSigningRequest() async throws {
        let fixture = try await RegistryFixture()
        let device = try await fixture.registry.createDevice(DeviceDraft(name: "camera"), by: fixture.ownerA)
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("x") },
            privateKey: Certificate.PrivateKey(P256.Signing.PrivateKey()), attributes: CertificateSigningRequest.Attributes()
        )
        // Change the last byte of the DER (inside the signature's s value): still well-formed,
        // but the signature no longer verifies.
        var der = try csr.serializeAsPEM().derBytes
        der[der.count - 1] ^= 0x01
        let forgedPEM = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: der).pemString
        await #expect { try await fixture.registry.createCredential(deviceID: device.id, .certificateSigningRequest(pem: forgedPEM), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "csr")
        }
        await #expect { try await fixture.registry.createCredential(deviceID: device.id, .certificateSigningRequest(pem: "not a csr"), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "csr")
        }
    }

    @Test("a generated key pair comes back once as PKCS#8 and matches the certificate")
    func generatedKey() async throws {
        let fixture = try await RegistryFixture()
        let device = try await fixture.registry.createDevice(DeviceDraft(name: "tracker"), by: fixture.ownerA)
        let issued = try await fixture.registry.createCredential(deviceID: device.id, .generatedCertificate(validityDays: 30), by: fixture.ownerA)
        let keyPEM = try #require(issued.privateKeyPEM)
        #expect(keyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        let certificate = try Certificate(pemEncoded: try #require(issued.certificatePEM))
        #expect(certificate.publicKey == Certificate.PublicKey(key.publicKey))
        let days = certificate.notValidAfter.timeIntervalSince(fixture.clock.now) / 86_400
        #expect(abs(days - 30) < 0.001)
        // The key is not kept: listing credentials never shows it.
        let listed = try await fixture.registry.credentials(deviceID: device.id, by: fixture.ownerA)
        #expect(listed.count == 1)
        #expect(listed[0].certificatePEM == issued.certificatePEM)
        await #expect { try await fixture.registry.createCredential(deviceID: device.id, .generatedCertificate(validityDays: 0), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "validityDays")
        }
    }

    @Test("an existing certificate registers only when one of the tenant's CAs issued it")
    func existingCertificate() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        let device = try await registry.createDevice(DeviceDraft(name: "plc"), by: fixture.ownerA)
        let (caPEM, leafPEM) = try Self.externalChain(commonName: device.id)
        await #expect { try await registry.createCredential(deviceID: device.id, .existingCertificate(pem: leafPEM), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "certificate")
        }
        await #expect { try await registry.registerCertificateAuthority(pem: leafPEM, by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .invalid, field: "certificate")
        }
        let authority = try await registry.registerCertificateAuthority(pem: caPEM, by: fixture.ownerA)
        #expect(authority.kind == .external)
        // The TLS listener learns of it, to trust it without a restart.
        #expect(fixture.recordedChanges().contains(.certificateAuthorityAdded(tenantID: fixture.ownerA.tenantID)))
        await #expect { try await registry.registerCertificateAuthority(pem: caPEM, by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "certificate")
        }
        let issued = try await registry.createCredential(deviceID: device.id, .existingCertificate(pem: leafPEM), by: fixture.ownerA)
        let fingerprint = try #require(issued.credential.certificateFingerprint)
        #expect(try await registry.authenticateDevice(certificateFingerprint: fingerprint, commonName: nil, issuerFingerprint: nil, mapping: .fingerprint)?.deviceID == device.id)
        await #expect { try await registry.createCredential(deviceID: device.id, .existingCertificate(pem: leafPEM), by: fixture.ownerA) } throws: {
            RegistryError.Code.matches($0, .conflict, field: "certificate")
        }
        // Another tenant's CA is no use for CN mapping: B's device cannot be claimed by a
        // certificate from A's CA.
        let tenantB = try await fixture.makeTenant("b")
        let deviceB = try await registry.createDevice(DeviceDraft(name: "b-thing"), by: tenantB)
        let builtInA = try #require(try await registry.certificateAuthorities(by: fixture.ownerA).first { $0.kind == .builtIn })
        #expect(try await registry.authenticateDevice(certificateFingerprint: "00", commonName: deviceB.id, issuerFingerprint: builtInA.fingerprint, mapping: .commonName) == nil)
        #expect(try await registry.authenticateDevice(certificateFingerprint: "00", commonName: device.id, issuerFingerprint: builtInA.fingerprint, mapping: .commonName)?.tenantID == fixture.tenantA.id)
    }

    /// An external CA and a leaf it issued (PEM).
    static func externalChain(commonName: String) throws -> (ca: String, leaf: String) {
        let caKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let caName = try DistinguishedName { CommonName("Factory CA") }
        let now = Date()
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: caKey.publicKey, notValidBefore: now - 60, notValidAfter: now + 86_400 * 30,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
            issuerPrivateKey: caKey
        )
        let leafKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: leafKey.publicKey, notValidBefore: now - 60, notValidAfter: now + 86_400,
            issuer: caName, subject: try DistinguishedName { CommonName(commonName) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions(), issuerPrivateKey: caKey
        )
        return (try ca.serializeAsPEM().pemString, try leaf.serializeAsPEM().pemString)
    }
}
