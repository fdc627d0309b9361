import ArgumentParser
import Foundation

/// Verifies the audit chain straight from `<data-dir>/meridian.sqlite`.
enum OfflineAudit {
    static func verify(dataDirectory: String) async throws -> [String: Any] {
        throw ValidationError("--data-dir: offline verification is not available yet")
    }
}
