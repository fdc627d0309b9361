import Foundation

/// Collects everything an `AsyncStream` yields, so a test can wait for an element with a
/// timeout (cancelling a task that iterates an `AsyncStream` would end the stream for good).
final class StreamRecorder<Element: Sendable>: @unchecked Sendable {
    struct Timeout: Error, CustomStringConvertible {
        var description: String
    }

    private let lock = NSLock()
    private var elements: [Element] = []
    private var task: Task<Void, Never>?

    init(_ stream: AsyncStream<Element>) {
        task = Task { [weak self] in
            for await element in stream {
                guard let self else { return }
                self.lock.withLock { self.elements.append(element) }
            }
        }
    }

    deinit {
        task?.cancel()
    }

    /// Everything received so far.
    var all: [Element] { lock.withLock { elements } }

    /// Waits until an element matching `predicate` arrived (at or after index `from`).
    @discardableResult
    func first(
        within timeout: Duration = .seconds(30),
        from start: Int = 0,
        where predicate: (Element) -> Bool = { _ in true },
        sourceLocation: String = #function
    ) async throws -> Element {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let match = lock.withLock({ elements.dropFirst(start).first(where: predicate) }) { return match }
            guard ContinuousClock.now < deadline else {
                throw Timeout(description: "nothing matching arrived within \(timeout) (\(all.count) received)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits until at least `count` elements arrived, returning them.
    @discardableResult
    func wait(forCount count: Int, within timeout: Duration = .seconds(30)) async throws -> [Element] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let snapshot = all
            if snapshot.count >= count { return snapshot }
            guard ContinuousClock.now < deadline else {
                throw Timeout(description: "only \(snapshot.count) of \(count) arrived within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
