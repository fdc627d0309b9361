import Logging
import MQTTClient
import MQTTCore
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import MQTTBroker

/// A broker on a real `MultiThreadedEventLoopGroup` with two loops, listening on an ephemeral
/// 127.0.0.1 port, for tests through real sockets with ``MQTTClient`` as the client.
///
/// The group is the broker's own, so nothing but the listener's accepts takes loops from it:
/// accepted connections alternate between the two loops, which ``steerNextConnection(toLoop:)``
/// relies on. Clients run on NIO's singleton group.
final class SocketBroker: Sendable {
    let group: MultiThreadedEventLoopGroup
    let broker: MQTTBroker
    let port: Int

    private init(group: MultiThreadedEventLoopGroup, broker: MQTTBroker, port: Int) {
        self.group = group
        self.broker = broker
        self.port = port
    }

    /// Starts a broker (no `$SYS` topics unless `configure` turns them on) and runs `body` with
    /// it; shuts the broker and its group down afterwards, also when `body` throws.
    static func with<T>(
        loops: Int = 2,
        store: (any MQTTSessionStore)? = nil,
        messageTap: any MQTTMessageTap = NoMessageTap(),
        configure: (inout BrokerConfiguration) -> Void = { _ in },
        _ body: (SocketBroker) async throws -> T
    ) async throws -> T {
        let fixture = try await start(loops: loops, store: store, messageTap: messageTap, configure: configure)
        do {
            let result = try await body(fixture)
            await fixture.stop()
            return result
        } catch {
            await fixture.stop()
            throw error
        }
    }

    /// Starts a broker; with a `store`, it recovers the stored state before it listens.
    static func start(
        loops: Int = 2,
        store: (any MQTTSessionStore)? = nil,
        messageTap: any MQTTMessageTap = NoMessageTap(),
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> SocketBroker {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        var configuration = BrokerConfiguration()
        configuration.sysInterval = 0
        configure(&configuration)
        var logger = Logger(label: "socket-tests")
        logger.logLevel = .critical
        let broker = MQTTBroker(
            configuration: configuration,
            eventLoopGroup: group,
            messageTap: messageTap,
            sessionStore: store,
            logger: logger
        )
        do {
            if store != nil { try await broker.recover() }
            let listener = try await broker.bind(host: "127.0.0.1", port: 0)
            broker.start()
            return SocketBroker(group: group, broker: broker, port: listener.port)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private let stopped = Atomic<Bool>(false)

    /// Shuts the broker down gracefully (once), lets work still passing between the loops
    /// finish, then stops the loops.
    func stop() async {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        await broker.shutdown(timeout: .seconds(2))
        await quiesce(group)
        try? await group.shutdownGracefully()
    }

    var statistics: MQTTBrokerStatistics { broker.statistics }

    /// The number of event loops connections are spread over.
    var loopCount: Int { broker.core.loops.count }

    /// A client for this broker (not yet connected).
    func client(
        _ clientIdentifier: String = socketClientID(),
        version: MQTTProtocolVersion = .v5,
        configure: (inout MQTTClient.Configuration) -> Void = { _ in }
    ) -> MQTTClient {
        var configuration = MQTTClient.Configuration(
            host: "127.0.0.1",
            port: port,
            protocolVersion: version,
            clientIdentifier: clientIdentifier
        )
        configuration.connectTimeout = .seconds(20)
        configure(&configuration)
        return MQTTClient(configuration: configuration)
    }

    /// The index of the event loop the client's current session lives on, if it has one.
    func loopIndex(of clientIdentifier: String) -> Int? {
        broker.core.registry.session(for: clientIdentifier)?.loop.index
    }

    /// The index of the loop `client`'s session lives on; fails the test when it has none.
    func loopIndex(of client: MQTTClient, sourceLocation: SourceLocation = #_sourceLocation) throws -> Int {
        try #require(
            loopIndex(of: client.configuration.clientIdentifier),
            "no session for \(client.configuration.clientIdentifier)",
            sourceLocation: sourceLocation
        )
    }

    /// Makes the broker's next accepted connection land on loop `index`. Accepted connections
    /// take the group's loops in turn, so this connects probe clients until one lands on the
    /// loop before `index`, then disconnects them (which takes no loop).
    func steerNextConnection(toLoop index: Int) async throws {
        let previous = (index + loopCount - 1) % loopCount
        var probes: [MQTTClient] = []
        var landed = false
        for _ in 0..<loopCount where !landed {
            let probe = client(socketClientID("probe"))
            try await probe.connect()
            probes.append(probe)
            landed = try loopIndex(of: probe) == previous
        }
        for probe in probes { try await probe.disconnect() }
        guard landed else { throw SocketTestTimeout(description: "no probe connection landed on loop \(previous)") }
    }

    /// Connects `client` so that its connection (and session) is on loop `index`.
    @discardableResult
    func connect(
        _ client: MQTTClient,
        onLoop index: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws
        -> ConnAckPacket
    {
        try await steerNextConnection(toLoop: index)
        let connAck = try await client.connect()
        let landed = try loopIndex(of: client, sourceLocation: sourceLocation)
        try #require(
            landed == index,
            "connection landed on loop \(landed), not \(index)",
            sourceLocation: sourceLocation
        )
        return connAck
    }

    /// Connections and index entries each loop holds, read on the loops themselves.
    func perLoopState() async throws -> [(connections: Int, indexEntries: Int)] {
        var result: [(connections: Int, indexEntries: Int)] = []
        for loop in broker.core.loops {
            let state = try await loop.eventLoop.submit { (loop.connections.count, loop.subscriptionCount) }.get()
            result.append((connections: state.0, indexEntries: state.1))
        }
        return result
    }
}

/// Runs a few rounds of empty tasks on every loop of `group`, so that work the loops still hand
/// each other (index replica updates after sessions end) is done before the loops stop: a loop
/// that stops with such a task pending would leak its promise, which debug builds trap on.
func quiesce(_ group: any EventLoopGroup) async {
    for _ in 0..<3 {
        for loop in group.makeIterator() {
            try? await loop.submit {}.get()
        }
    }
}

/// A unique client identifier.
func socketClientID(_ prefix: String = "client") -> String {
    "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
}

/// A unique topic prefix, so concurrently running tests never share topics.
func socketTopicRoot(_ prefix: String) -> String {
    "\(prefix)/\(UInt32.random(in: 0...UInt32.max))"
}

struct SocketTestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Waits until `condition` holds, checking every 10 ms; throws after `timeout`.
func eventually(
    _ what: @autoclosure () -> String,
    within timeout: Duration = .seconds(10),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw SocketTestTimeout(description: "\(what()) did not happen within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Runs `operation` but gives up after `timeout`, so that an acknowledgement that never comes
/// fails the test instead of hanging the suite (the operation's task is cancelled and left).
func within<T: Sendable>(
    _ timeout: Duration,
    _ what: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let work = Task { try await operation() }
    let slot = ResumeOnce<T>()
    return try await withCheckedThrowingContinuation { continuation in
        slot.store(continuation)
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if slot.resume(with: .failure(SocketTestTimeout(description: "\(what) did not finish within \(timeout)"))) {
                work.cancel()
            }
        }
        Task {
            slot.resume(with: await work.result)
            timer.cancel()
        }
    }
}

/// A continuation resumed by whichever comes first, the work or the timer.
private final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<T, any Error>?>(nil)

    func store(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation.withLock { $0 = continuation }
    }

    /// Resumes the continuation unless that happened already; returns whether it did now.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        guard let continuation = continuation.withLock({ $0.take() }) else { return false }
        continuation.resume(with: result)
        return true
    }
}

/// Everything a client receives on its `messages` stream, recorded by a task so that tests
/// can wait for messages with a timeout.
final class SocketInbox: Sendable {
    private let received: SocketRecords
    private let task: Task<Void, Never>

    init(_ client: MQTTClient) {
        let received = SocketRecords()
        let messages = client.messages
        self.received = received
        self.task = Task {
            for await message in messages { received.append(message) }
        }
    }

    deinit {
        task.cancel()
    }

    /// Everything received so far.
    var all: [PublishPacket] { received.all }

    var count: Int { received.count }

    /// Waits until at least `count` messages arrived and returns them.
    @discardableResult
    func wait(
        forCount count: Int,
        within timeout: Duration = .seconds(10),
        _ who: String = "client"
    ) async throws
        -> [PublishPacket]
    {
        try await eventually("\(who) receiving \(count) messages (has \(self.count))", within: timeout) {
            self.count >= count
        }
        return all
    }

    /// Waits `quiet`, then returns everything, to check that nothing more arrives.
    func settled(after quiet: Duration = .milliseconds(300)) async throws -> [PublishPacket] {
        try await Task.sleep(for: quiet)
        return all
    }
}

private final class SocketRecords: Sendable {
    private let messages = Mutex<[PublishPacket]>([])

    func append(_ message: PublishPacket) {
        messages.withLock { $0.append(message) }
    }

    var all: [PublishPacket] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }
}

/// Whether `filter` matches `topic` by the MQTT rules (written out here rather than taken from
/// the broker, so the tests' expectations do not share its code).
func socketTopicMatches(_ filter: String, _ topic: String) -> Bool {
    let filterLevels = filter.split(separator: "/", omittingEmptySubsequences: false)
    let topicLevels = topic.split(separator: "/", omittingEmptySubsequences: false)
    for (index, level) in filterLevels.enumerated() {
        if level == "#" { return true }
        guard index < topicLevels.count else { return false }
        if level != "+" && level != topicLevels[index] { return false }
    }
    return filterLevels.count == topicLevels.count
}

/// A flag one task sets and another reads.
final class SocketFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
