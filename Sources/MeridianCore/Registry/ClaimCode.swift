import Foundation

/// A code a device shows (printed on its label, or sent by the device itself) so that an operator
/// of another tenant can take it over. Stored hashed; single use; expires.
public struct ClaimCode: Sendable, Hashable, Codable {
    public var deviceID: String
    /// SHA-256 (hex) of the code.
    public var codeHash: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(deviceID: String, codeHash: String, createdAt: Date, expiresAt: Date) {
        self.deviceID = deviceID
        self.codeHash = codeHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}
