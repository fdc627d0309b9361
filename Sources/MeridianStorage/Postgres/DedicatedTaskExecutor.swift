import Dispatch

/// A task executor on a serial dispatch queue of its own, outside Swift's cooperative pool.
///
/// The PostgreSQL pool's tasks (its run loop, which opens connections, and the tasks that lease a
/// connection to a blocking caller) prefer it: they only ever wait asynchronously, so one queue
/// serves them all, and they keep running when every thread of the cooperative pool is busy or
/// blocked. Without it, a thread blocked in ``PostgresDatabase/blockingConnection(_:)`` waits for
/// a task that needs a cooperative thread to run; with the pool exhausted that wait never ends.
final class DedicatedTaskExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: the queue is the only state, and DispatchQueue is thread-safe.
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
