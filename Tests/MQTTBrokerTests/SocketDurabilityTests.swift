import MQTTClient
import MQTTCore
import NIOCore
import Synchronization
import Testing

@testable import MQTTBroker

/// Durable sessions on two event loops: acknowledgements wait for the store whichever loop the
/// subscriber is on, and after a crash each recovered session resumes from either loop.
@Suite("Durable sessions over sockets on two event loops", .timeLimit(.minutes(1)))
struct SocketDurabilityTests {
    @Test("acknowledged messages for persistent subscribers on both loops survive a crash and resume on the other loop")
    func acknowledgedMessagesSurviveACrash() async throws {
        let store = MemorySessionStore()
        let disk = CrashableSessionStore(store)
        let root = socketTopicRoot("durable")
        let persistent: (inout MQTTClient.Configuration) -> Void = {
            $0.cleanStart = false
            $0.connectProperties.sessionExpiryInterval = 3600
        }
        let onlineID = socketClientID("online")
        let offlineID = socketClientID("offline")
        let count = 10

        let first = try await SocketBroker.start(store: disk)
        do {
            // One subscriber stays connected but acknowledges nothing; the other goes away.
            let online = first.client(onlineID) {
                persistent(&$0)
                $0.automaticAcknowledgement = false
            }
            let onlineInbox = SocketInbox(online)
            try await first.connect(online, onLoop: 0)
            try await online.subscribe("\(root)/#", qos: .atLeastOnce)
            let offline = first.client(offlineID, configure: persistent)
            try await first.connect(offline, onLoop: 1)
            try await offline.subscribe("\(root)/#", qos: .atLeastOnce)
            try await offline.disconnect()

            let publisher = first.client(socketClientID("pub"))
            try await publisher.connect()
            try await within(.seconds(10), "publishing") {
                for index in 0..<count {
                    let ack = try await publisher.publish("\(root)/m", payload: "m\(index)", qos: .atLeastOnce)
                    #expect(ack?.reasonCode == .success)
                }
            }
            try await onlineInbox.wait(forCount: count)
            #expect(store.queuedOnDisk == 2 * count, "every acknowledged delivery is on disk")
        } catch {
            await first.stop()
            throw error
        }
        // The crash: from now on nothing reaches the disk (the broker still shuts down, so its
        // loops stop cleanly, but what it writes on the way out is lost).
        disk.crash()
        await first.stop()

        try await SocketBroker.with(store: store) { second in
            // Each subscriber comes back on the loop the other one used.
            for (clientID, loop) in [(onlineID, 1), (offlineID, 0)] {
                let client = second.client(clientID, configure: persistent)
                let inbox = SocketInbox(client)
                let connAck = try await second.connect(client, onLoop: loop)
                #expect(connAck.sessionPresent, "\(clientID)")
                let received = try await inbox.wait(forCount: count, "\(clientID)")
                #expect(received.map(\.payload.string) == (0..<count).map { "m\($0)" }, "\(clientID)")
            }
            // The subscriptions came back too, on every loop's replica.
            #expect(second.statistics.subscriptions == 2)
            #expect(try await second.perLoopState().map(\.indexEntries) == [2, 2])
            try await eventually("acknowledged deliveries to leave the store") { store.queuedOnDisk == 0 }
        }
    }

    @Test(
        "with strict durability, QoS 1 from one loop to a persistent subscriber on the other is acknowledged and delivered in order"
    )
    func strictDurabilityAcrossLoops() async throws {
        let store = MemorySessionStore()
        try await SocketBroker.with(store: store) { broker in
            let root = socketTopicRoot("strict")
            let subscriber = broker.client(socketClientID("sub")) {
                $0.cleanStart = false
                $0.connectProperties.sessionExpiryInterval = 3600
            }
            let inbox = SocketInbox(subscriber)
            try await broker.connect(subscriber, onLoop: 1)
            try await subscriber.subscribe("\(root)/#", qos: .atLeastOnce)
            let publishers = [broker.client(socketClientID("pub0")), broker.client(socketClientID("pub1"))]
            try await broker.connect(publishers[0], onLoop: 0)
            try await broker.connect(publishers[1], onLoop: 1)
            let perPublisher = 100
            try await within(.seconds(15), "publishing") {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, publisher) in publishers.enumerated() {
                        group.addTask {
                            for sequence in 0..<perPublisher {
                                try await publisher.publish(
                                    "\(root)/p\(index)",
                                    payload: "\(index):\(sequence)",
                                    qos: .atLeastOnce
                                )
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let received = try await inbox.wait(forCount: 2 * perPublisher, within: .seconds(10))
            for publisher in 0..<2 {
                let sequences = received.compactMap { message -> Int? in
                    let parts = message.payload.string.split(separator: ":")
                    return parts.first == "\(publisher)" ? Int(parts[1]) : nil
                }
                #expect(sequences == Array(0..<perPublisher), "publisher \(publisher)")
            }
            try await eventually("acknowledged deliveries to leave the store") { store.queuedOnDisk == 0 }
        }
    }
}

/// A session store that forwards to another until it "crashes"; after that every write is
/// lost, as if the process had died at that moment.
final class CrashableSessionStore: MQTTSessionStore, Sendable {
    private let store: any MQTTSessionStore
    private let crashed = Atomic<Bool>(false)

    init(_ store: any MQTTSessionStore) {
        self.store = store
    }

    func crash() { crashed.store(true, ordering: .sequentiallyConsistent) }

    private var isCrashed: Bool { crashed.load(ordering: .sequentiallyConsistent) }

    func recover() throws -> RecoveredBrokerState { try store.recover() }

    func write(_ operations: [PersistenceOperation]) throws {
        if !isCrashed { try store.write(operations) }
    }

    func purge(limit: Int) throws -> Int { isCrashed ? 0 : try store.purge(limit: limit) }

    func sync() throws {
        if !isCrashed { try store.sync() }
    }

    func close() throws {
        if !isCrashed { try store.close() }
    }
}
