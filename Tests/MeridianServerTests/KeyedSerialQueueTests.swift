import Synchronization
import Testing

@testable import MeridianServer

@Suite("Keyed serial queue")
struct KeyedSerialQueueTests {
    @Test("work of one key runs in order, one at a time; keys run independently; finished keys are forgotten")
    func ordering() async throws {
        let queue = KeyedSerialQueue()
        let log = Mutex<[String]>([])
        let running = Mutex<[String: Int]>([:])
        let overlap = Mutex(false)
        for index in 0..<10 {
            for key in ["a", "b"] {
                queue.enqueue(key) {
                    let concurrent = running.withLock { running -> Int in
                        running[key, default: 0] += 1
                        return running[key, default: 0]
                    }
                    if concurrent > 1 { overlap.withLock { $0 = true } }
                    await Task.yield()
                    log.withLock { $0.append("\(key)\(index)") }
                    running.withLock { $0[key, default: 0] -= 1 }
                }
            }
        }
        // A full test run keeps the cooperative pool busy at its start: be patient.
        try await serverEventually(
            "the work to finish (done: \(log.withLock { $0.count }), keys pending: \(queue.pendingKeys))",
            within: .seconds(60)
        ) { log.withLock { $0.count } == 20 }
        let entries = log.withLock { $0 }
        #expect(entries.filter { $0.hasPrefix("a") } == (0..<10).map { "a\($0)" })
        #expect(entries.filter { $0.hasPrefix("b") } == (0..<10).map { "b\($0)" })
        #expect(!overlap.withLock { $0 })
        try await serverEventually("the keys to be forgotten", within: .seconds(60)) { queue.pendingKeys == 0 }
    }
}
