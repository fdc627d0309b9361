import Crypto
import X509

/// A key pair Meridian generates for a device that cannot make its own.
struct P256KeyPair {
    private let key = P256.Signing.PrivateKey()

    var publicKey: Certificate.PublicKey { Certificate.PublicKey(key.publicKey) }
    /// PKCS#8 PEM.
    var privateKeyPEM: String { key.pemRepresentation }
}
