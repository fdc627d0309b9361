import Crypto
import Foundation
import JWTKit
import MeridianCore

/// Signs and verifies the API's short-lived access tokens: HS256 JWTs (jwt-kit) carrying the
/// user (`sub`), the tenant, the role, and the expiry.
///
/// The 32-byte signing key is random, generated on first start and kept in
/// `<data-dir>/api-signing.key` (mode 0600), so tokens survive a restart; deleting the file
/// invalidates every access token (refresh tokens still work).
public struct APITokenSigner: Sendable {
    /// The claims of an access token.
    struct Claims: JWTPayload, Equatable {
        var sub: SubjectClaim
        var tenant: String
        var role: Role
        var username: String
        var iat: IssuedAtClaim
        var exp: ExpirationClaim

        /// The user (`sub`).
        var userID: String { sub.value }
        /// When it expires (`exp`).
        var expiresAt: Date { exp.value }

        func verify(using algorithm: some JWTAlgorithm) throws {
            try exp.verifyNotExpired()
        }
    }

    /// How long an access token is valid.
    public let lifetime: TimeInterval
    private let keys: JWTKeyCollection

    /// A signer with this key (at least 32 bytes).
    public init(key: [UInt8], lifetime: TimeInterval = 15 * 60) async {
        self.lifetime = lifetime
        self.keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(key: SymmetricKey(data: key)), digestAlgorithm: .sha256)
    }

    /// The signer whose key is in `<dataDirectory>/api-signing.key`, creating the file (32
    /// random bytes, mode 0600) when there is none.
    public static func load(dataDirectory: String, lifetime: TimeInterval = 15 * 60) async throws -> APITokenSigner {
        let path = (dataDirectory as NSString).appendingPathComponent("api-signing.key")
        return await APITokenSigner(key: try loadOrCreateKey(at: path), lifetime: lifetime)
    }

    static func loadOrCreateKey(at path: String) throws -> [UInt8] {
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count >= 32 else {
                throw MeridianStartupError(
                    "\(path) holds \(data.count) bytes, not a 32-byte API signing key; delete it to have a new one made"
                )
            }
            return Array(data)
        }
        var generator = SystemRandomNumberGenerator()
        let key = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let temporary = path + ".tmp-\(MeridianID.generate(length: 8))"
        guard
            FileManager.default.createFile(
                atPath: temporary,
                contents: Data(key),
                attributes: [.posixPermissions: 0o600]
            )
        else {
            throw MeridianStartupError("cannot write the API signing key to \(path)")
        }
        do {
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw MeridianStartupError("cannot write the API signing key to \(path): \(error)")
        }
        return key
    }

    /// A new access token for `userID` acting in `tenantID` with `role`.
    func sign(userID: String, username: String, tenantID: String, role: Role, now: Date = Date()) async throws -> String {
        // Whole seconds: JWT NumericDates are read as integers by many clients.
        let now = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let claims = Claims(
            sub: SubjectClaim(value: userID),
            tenant: tenantID,
            role: role,
            username: username,
            iat: IssuedAtClaim(value: now),
            exp: ExpirationClaim(value: now.addingTimeInterval(lifetime))
        )
        return try await keys.sign(claims)
    }

    /// The claims of a valid, unexpired token; nil for anything else.
    func verify(_ token: String) async -> Claims? {
        try? await keys.verify(token, as: Claims.self)
    }

    /// Whether `token` has the form of a JWT (three base64url parts), as opposed to an API key.
    static func looksLikeJWT(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 && parts.allSatisfy { !$0.isEmpty }
            && token.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            }
    }
}
