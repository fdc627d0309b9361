import MeridianCore
import Synchronization

/// A `TwinStore` in memory for the service's unit tests (the real stores pass the conformance
/// suite in MeridianStorageTests).
final class MemoryTwinStore: TwinStore, Sendable {
    private struct State {
        var twins: [TwinKey: TwinDocument] = [:]
        var history: [TwinHistoryEntry] = []
        var sequence: Int64 = 0
        /// Saves to refuse as if another writer had won (concurrency tests).
        var losingSaves = 0
    }

    private let state = Mutex(State())

    /// The next `count` saves lose their race (return false).
    func loseNextSaves(_ count: Int) {
        state.withLock { $0.losingSaves = count }
    }

    func twin(_ key: TwinKey) async throws -> TwinDocument? {
        state.withLock { $0.twins[key] }
    }

    func save(_ entry: TwinHistoryEntry, previousVersion: Int64, previousExists: Bool) async throws -> Bool {
        state.withLock { state in
            if state.losingSaves > 0 {
                state.losingSaves -= 1
                return false
            }
            let current = state.twins[entry.key]
            guard (current?.version ?? 0) == previousVersion, (current?.exists ?? false) == previousExists else {
                return false
            }
            state.twins[entry.key] = entry.document
            state.sequence += 1
            var entry = entry
            entry.sequence = state.sequence
            state.history.append(entry)
            return true
        }
    }

    func twin(_ key: TwinKey, at timestamp: Int64) async throws -> TwinHistoryEntry? {
        state.withLock { $0.history.last { $0.key == key && $0.timestamp <= timestamp } }
    }

    func history(_ key: TwinKey, before: Int64?, limit: Int) async throws -> [TwinHistoryEntry] {
        state.withLock { state in
            Array(state.history.reversed().filter { $0.key == key && $0.sequence < (before ?? .max) }.prefix(limit))
        }
    }

    func deleteHistory(before timestamp: Int64) async throws -> Int {
        state.withLock { state in
            var newest: [TwinKey: Int64] = [:]
            for entry in state.history { newest[entry.key] = entry.sequence }
            let before = state.history.count
            state.history.removeAll { $0.timestamp < timestamp && newest[$0.key] != $0.sequence }
            return before - state.history.count
        }
    }

    func twinNames(tenantID: String, deviceID: String) async throws -> [String] {
        state.withLock { state in
            state.twins.filter { $0.key.tenantID == tenantID && $0.key.deviceID == deviceID && $0.value.exists }.map(
                \.key.name
            ).sorted()
        }
    }

    func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: TwinDocument] {
        state.withLock { state in
            var result: [String: TwinDocument] = [:]
            for id in deviceIDs {
                if let twin = state.twins[TwinKey(tenantID: tenantID, deviceID: id)] { result[id] = twin }
            }
            return result
        }
    }

    func deleteTwins(deviceID: String) async throws {
        state.withLock { state in
            state.twins = state.twins.filter { $0.key.deviceID != deviceID }
            state.history.removeAll { $0.key.deviceID == deviceID }
        }
    }
}

/// A clock the tests move by hand (milliseconds).
final class ManualMilliseconds: Sendable {
    private let value: Mutex<Int64>

    init(_ start: Int64 = 1_700_000_000_000) {
        value = Mutex(start)
    }

    var now: Int64 { value.withLock { $0 } }

    func advance(_ milliseconds: Int64) {
        value.withLock { $0 += milliseconds }
    }
}
