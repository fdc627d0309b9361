import Crypto
import CryptoExtras
import Foundation

/// Secrets Meridian hands out (tokens, API keys, refresh tokens, claim codes) and how they are
/// stored: high-entropy secrets by their SHA-256, human-chosen passwords by ``PasswordHash``.
public enum Secrets {
    /// A new random secret: `prefix` followed by 32 characters (about 165 bits).
    public static func generate(prefix: String = "") -> String {
        prefix + MeridianID.generate(length: 32)
    }

    /// Lower-case hex SHA-256 of `secret`, the stored form of high-entropy secrets.
    public static func sha256(_ secret: String) -> String {
        SHA256.hash(data: Array(secret.utf8)).hexString
    }

    /// Compares two strings in time independent of where they differ.
    public static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8)
        let right = Array(rhs.utf8)
        guard left.count == right.count else { return false }
        var difference: UInt8 = 0
        for index in left.indices { difference |= left[index] ^ right[index] }
        return difference == 0
    }
}

/// A slow, salted password hash: PBKDF2-HMAC-SHA256 (swift-crypto), encoded as
/// `pbkdf2-sha256$<rounds>$<salt, base64>$<hash, base64>`.
public enum PasswordHash {
    /// Rounds for new hashes (OWASP's 2023 guidance for PBKDF2-HMAC-SHA256 is 600,000; this
    /// trades some of that for connect storms of password devices, whose successful checks are
    /// also cached).
    public static let defaultRounds = 210_000

    /// Hashes `password` with a fresh random salt.
    public static func make(_ password: String, rounds: Int = defaultRounds) -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let derived = derive(password, salt: salt, rounds: rounds)
        return "pbkdf2-sha256$\(rounds)$\(Data(salt).base64EncodedString())$\(Data(derived).base64EncodedString())"
    }

    /// Whether `password` matches `encoded`. A malformed `encoded` never matches.
    public static func verify(_ password: String, against encoded: String) -> Bool {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let rounds = Int(parts[1]), rounds > 0,
            rounds <= 10_000_000, let salt = Data(base64Encoded: String(parts[2])),
            let expected = Data(base64Encoded: String(parts[3]))
        else { return false }
        let derived = derive(password, salt: Array(salt), rounds: rounds)
        return Secrets.constantTimeEquals(Data(derived).base64EncodedString(), expected.base64EncodedString())
    }

    /// Where asynchronous checks run: one thread of its own, outside Swift's cooperative pool.
    /// A check costs tens of milliseconds of CPU on purpose; a storm of bad CONNECTs or logins
    /// then queues here, using at most one core, while the rest of the server stays responsive
    /// (on the cooperative pool they would hold every thread it has).
    private static let queue = DispatchQueue(label: "meridian.password-hash")

    /// ``verify(_:against:)`` on the password-hashing thread.
    public static func verifyOffPool(_ password: String, against encoded: String) async -> Bool {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: verify(password, against: encoded)) }
        }
    }

    private static func derive(_ password: String, salt: [UInt8], rounds: Int) -> [UInt8] {
        // PBKDF2 only throws for parameters out of range, which these never are.
        let key = try! KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8),
            salt: salt,
            using: .sha256,
            outputByteCount: 32,
            unsafeUncheckedRounds: rounds
        )
        return key.withUnsafeBytes { Array($0) }
    }
}
