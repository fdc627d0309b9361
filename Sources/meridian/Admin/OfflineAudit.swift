import ArgumentParser
import Foundation
import MeridianCore
import MeridianStorage

/// Verifies the audit chain straight from `<data-dir>/meridian.sqlite`.
enum OfflineAudit {
    static func verify(dataDirectory: String) async throws -> [String: Any] {
        let path = (dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("--data-dir: no registry database at \(path)")
        }
        let store: SQLiteRegistryStore
        do {
            store = try SQLiteRegistryStore(path: path)
        } catch {
            throw ValidationError("--data-dir: \(error)")
        }
        let result = try await Registry(store: store).verifyAudit()
        var answer: [String: Any] = ["intact": result.isIntact, "entries": result.entries]
        if let sequence = result.firstBrokenSequence { answer["firstBrokenSequence"] = sequence }
        if let problem = result.problem { answer["problem"] = problem }
        return answer
    }
}
