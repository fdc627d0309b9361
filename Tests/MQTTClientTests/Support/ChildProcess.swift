#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// A child process started with `posix_spawn`, its output discarded.
///
/// Foundation's `Process` is not used: on Linux, several of them started at once from the test
/// threads could leave `run()` or `waitUntilExit()` waiting for ever, and with them the thread of
/// Swift's small cooperative pool they ran on — the whole test run then stalled.
final class ChildProcess: Sendable {
    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    let processIdentifier: pid_t
    /// The exit status once reaped (`waitpid`), nil while running.
    private let status = Mutex<Int32?>(nil)

    /// Starts `executable` with `arguments` (in the current directory: give absolute paths).
    init(_ executable: String, _ arguments: [String]) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard result == 0 else { throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(result)))") }
        processIdentifier = pid
    }

    /// Whether it still runs (reaps it once it has exited).
    var isRunning: Bool {
        status.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            let reaped = waitpid(processIdentifier, &raw, WNOHANG)
            if reaped == processIdentifier || reaped < 0 { status = raw }
            return status == nil
        }
    }

    /// Its exit code (or 128 + signal); -1 while it runs.
    var terminationStatus: Int32 {
        guard !isRunning, let raw = status.withLock({ $0 }) else { return -1 }
        return (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
    }

    /// Waits (blocking the calling thread) until it exits; returns ``terminationStatus``.
    @discardableResult
    func waitUntilExit() -> Int32 {
        while isRunning { usleep(2_000) }
        return terminationStatus
    }

    /// Runs `executable` to its end on a thread of its own (never one of Swift's cooperative
    /// pool); returns its exit code.
    static func run(_ executable: String, _ arguments: [String]) async throws -> Int32 {
        let child = try ChildProcess(executable, arguments)
        return await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: child.waitUntilExit()) }.start()
        }
    }
}
