import Foundation
import Logging
import NIOConcurrencyHelpers

/// Keeps devices' last-seen times: every accepted device connection notes its device, and the
/// notes are written in batches (one registry call, at most one a second), so a reconnect storm
/// costs one UPDATE a second, not one per CONNECT.
final class LastSeenRecorder: Sendable {
    private struct State {
        var pending: Set<String> = []
        var flushScheduled = false
    }

    private let state = NIOLockedValueBox(State())
    private let write: @Sendable ([String], Date) async throws -> Void
    private let interval: Duration
    private let logger: Logger

    init(interval: Duration = .seconds(1), logger: Logger, write: @escaping @Sendable ([String], Date) async throws -> Void) {
        self.interval = interval
        self.logger = logger
        self.write = write
    }

    /// Notes that `deviceID` was seen now.
    func note(_ deviceID: String) {
        let schedule = state.withLockedValue { state -> Bool in
            state.pending.insert(deviceID)
            guard !state.flushScheduled else { return false }
            state.flushScheduled = true
            return true
        }
        guard schedule else { return }
        Task { [self] in
            try? await Task.sleep(for: interval)
            await flush()
        }
    }

    /// Writes what is pending now.
    func flush() async {
        let (devices, time) = state.withLockedValue { state -> ([String], Date) in
            let devices = Array(state.pending)
            state.pending.removeAll()
            state.flushScheduled = false
            return (devices, Date())
        }
        guard !devices.isEmpty else { return }
        do {
            try await write(devices, time)
        } catch {
            logger.warning("could not record devices' last-seen time", metadata: ["devices": "\(devices.count)", "error": "\(error)"])
        }
    }
}
