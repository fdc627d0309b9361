import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import MeridianCore
import NIOConcurrencyHelpers

/// Device access tokens recently seen on HTTP ingest (keyed by their SHA-256, never the token),
/// so a device posting every second does not cost a registry read per request. Entries live a
/// few seconds, and every revocation in the registry empties the cache at once.
final class DeviceTokenCache: Sendable {
    private struct Entry {
        var identity: DeviceIdentity
        var expires: ContinuousClock.Instant
    }

    private let entries = NIOLockedValueBox([String: Entry]())
    static let lifetime: Duration = .seconds(10)
    static let capacity = 100_000

    func identity(for hash: String) -> DeviceIdentity? {
        entries.withLockedValue { entries in
            guard let entry = entries[hash] else { return nil }
            guard entry.expires > .now else {
                entries[hash] = nil
                return nil
            }
            return entry.identity
        }
    }

    func store(_ identity: DeviceIdentity, for hash: String) {
        entries.withLockedValue { entries in
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[hash] = Entry(identity: identity, expires: .now + Self.lifetime)
        }
    }

    func removeAll() {
        entries.withLockedValue { $0.removeAll() }
    }

    static func hash(_ token: String) -> String {
        SHA256.hash(data: Array(token.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

extension APIServices {
    /// Starts emptying the device token cache on every registry revocation.
    func followRevocations() {
        let cache = deviceTokens
        registry.observe { change in
            switch change {
            case .deviceRevoked, .credentialRevoked: cache.removeAll()
            case .apiKeyRevoked, .certificateAuthorityAdded: break
            }
        }
    }

    /// The device behind `Authorization: Bearer <device access token>` (401 otherwise).
    func authenticateDevice(_ request: Request) async throws -> DeviceIdentity {
        let headers = request.headers[values: .authorization]
        guard headers.count == 1, let header = headers.first else {
            throw APIProblem.unauthenticated("send Authorization: Bearer <device access token>", tokenGiven: !headers.isEmpty)
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIProblem.unauthenticated("the Authorization header must be: Bearer <device access token>", tokenGiven: true)
        }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, token.utf8.count <= 4096 else {
            throw APIProblem.unauthenticated("the bearer token is empty or too long", tokenGiven: true)
        }
        let hash = DeviceTokenCache.hash(token)
        if let identity = deviceTokens.identity(for: hash) { return identity }
        guard let identity = try await registry.authenticateDevice(token: token) else {
            throw APIProblem.unauthenticated("the device access token is unknown or revoked, or the device is disabled", tokenGiven: true)
        }
        deviceTokens.store(identity, for: hash)
        return identity
    }
}
