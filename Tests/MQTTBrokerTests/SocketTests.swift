import MQTTClient
import MQTTCore
import NIOCore
import Synchronization
import Testing

@testable import MQTTBroker

/// The broker through real sockets, on two event loops, with ``MQTTClient`` as the client:
/// what crosses loops (deliveries, index replicas, session takeover, shared groups, wills) and
/// what must not leak (connections, sessions, subscriptions) under churn.
@Suite("Broker over sockets on two event loops", .timeLimit(.minutes(1)))
struct SocketTests {
    // MARK: fan-out

    /// A subscriber of the fan-out test: its filters with their QoS, and the client.
    private struct FanOutSubscriber: Sendable {
        var index: Int
        var filters: [(filter: String, qos: QoS)]
        var client: MQTTClient
        var inbox: SocketInbox
    }

    @Test(
        "20 publishers × 20 subscribers on overlapping wildcard filters: each message once, at the right QoS, in order per publisher",
        .serialized,  // one QoS at a time: three of these at once load two cores more than the test needs
        arguments: [QoS.atMostOnce, .atLeastOnce, .exactlyOnce]
    )
    func fanOutAcrossLoops(qos: QoS) async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("fan")
            let run = root.split(separator: "/")[1]
            let publisherCount = 20
            let messagesPerPublisher = 15
            @Sendable func topic(ofPublisher index: Int) -> String { "\(root)/g\(index % 4)/p\(index)" }
            let levels: [QoS] = [.atMostOnce, .atLeastOnce, .exactlyOnce]

            // Filters: everything, a group, one publisher, a group overlapping one publisher of
            // that group (one copy, the higher QoS), a leading wildcard plus another group.
            var subscribers: [FanOutSubscriber] = []
            for index in 0..<20 {
                let filters: [String]
                switch index % 5 {
                case 0: filters = ["\(root)/#"]
                case 1: filters = ["\(root)/g\(index % 4)/+"]
                case 2: filters = ["\(root)/+/p\(index)"]
                case 3: filters = ["\(root)/g\(index % 4)/#", "\(root)/+/p\((index + 4) % publisherCount)"]
                default: filters = ["+/\(run)/+/p\(index)", "\(root)/g\((index + 1) % 4)/+"]
                }
                let client = broker.client(
                    socketClientID("fan-sub\(index)"),
                    version: index.isMultiple(of: 2) ? .v5 : .v3_1_1
                )
                subscribers.append(
                    FanOutSubscriber(
                        index: index,
                        filters: filters.enumerated().map { ($1, levels[(index + $0) % 3]) },
                        client: client,
                        inbox: SocketInbox(client)
                    )
                )
            }
            let publishers = (0..<publisherCount).map { index in
                broker.client(socketClientID("fan-pub\(index)"), version: index % 4 < 2 ? .v5 : .v3_1_1)
            }

            try await within(.seconds(20), "connecting and subscribing 40 clients") { [subscribers] in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for subscriber in subscribers {
                        group.addTask {
                            try await subscriber.client.connect()
                            let subAck = try await subscriber.client.subscribe(
                                subscriber.filters.map { SubscribePacket.Subscription($0.filter, qos: $0.qos) }
                            )
                            #expect(subAck.reasonCodes == subscriber.filters.map { ReasonCode.granted($0.qos) })
                        }
                    }
                    for publisher in publishers {
                        group.addTask { try await publisher.connect() }
                    }
                    try await group.waitForAll()
                }
            }
            // Both loops serve subscribers and publishers, so deliveries cross loops both ways.
            let subscriberLoops = try subscribers.map { try broker.loopIndex(of: $0.client) }
            let publisherLoops = try publishers.map { try broker.loopIndex(of: $0) }
            for loop in 0..<broker.loopCount {
                #expect(subscriberLoops.contains(loop), "no subscriber on loop \(loop)")
                #expect(publisherLoops.contains(loop), "no publisher on loop \(loop)")
            }
            let before = broker.statistics

            try await within(.seconds(20), "publishing") {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, publisher) in publishers.enumerated() {
                        group.addTask {
                            for sequence in 0..<messagesPerPublisher {
                                let ack = try await publisher.publish(
                                    topic(ofPublisher: index),
                                    payload: "\(index):\(sequence)",
                                    qos: qos
                                )
                                if qos == .atMostOnce {
                                    #expect(ack == nil)
                                } else {
                                    #expect(ack?.reasonCode == .success)
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }

            var totalDeliveries = 0
            for subscriber in subscribers {
                // What the subscription rules promise this subscriber, per publisher.
                var expectedQoS: [Int: QoS] = [:]
                for publisher in 0..<publisherCount {
                    let matching = subscriber.filters.filter {
                        socketTopicMatches($0.filter, topic(ofPublisher: publisher))
                    }
                    if let highest = matching.map(\.qos).max() { expectedQoS[publisher] = min(qos, highest) }
                }
                let expectedCount = expectedQoS.count * messagesPerPublisher
                totalDeliveries += expectedCount
                try await subscriber.inbox.wait(
                    forCount: expectedCount,
                    within: .seconds(15),
                    "subscriber \(subscriber.index)"
                )
                let received = try await subscriber.inbox.settled(after: .milliseconds(100))
                #expect(
                    received.count == expectedCount,
                    "subscriber \(subscriber.index) \(subscriber.filters.map(\.filter))"
                )

                var sequences: [Int: [Int]] = [:]
                for message in received {
                    let parts = message.payload.string.split(separator: ":").compactMap { Int($0) }
                    guard parts.count == 2 else {
                        Issue.record("unexpected payload \(message.payload.string)")
                        continue
                    }
                    let publisher = parts[0]
                    #expect(message.topic == topic(ofPublisher: publisher))
                    #expect(
                        message.qos == expectedQoS[publisher],
                        "subscriber \(subscriber.index) got publisher \(publisher)'s message at \(message.qos)"
                    )
                    #expect(!message.retain)
                    sequences[publisher, default: []].append(parts[1])
                }
                #expect(
                    Set(sequences.keys) == Set(expectedQoS.keys),
                    "subscriber \(subscriber.index): publishers heard"
                )
                for (publisher, list) in sequences {
                    #expect(
                        list == Array(0..<messagesPerPublisher),
                        "subscriber \(subscriber.index): publisher \(publisher)'s messages out of order or duplicated"
                    )
                }
            }
            try await eventually("broker counters to settle") {
                let now = broker.statistics
                return now.messagesReceived - before.messagesReceived == publisherCount * messagesPerPublisher
                    && now.messagesSent - before.messagesSent == totalDeliveries
            }
            #expect(broker.statistics.messagesDropped == 0)
        }
    }

    // MARK: index replicas

    @Test("a subscription is on every loop's replica when SUBACK arrives, and gone when UNSUBACK arrives")
    func subscriptionChangesReachEveryLoopBeforeTheAck() async throws {
        try await SocketBroker.with { broker in
            let subscriber = broker.client(socketClientID("sub"))
            let publisher = broker.client(socketClientID("pub"))
            try await broker.connect(subscriber, onLoop: 0)
            try await broker.connect(publisher, onLoop: 1)
            let inbox = SocketInbox(subscriber)
            let root = socketTopicRoot("replica")
            let rounds = 20
            // (Our broker never answers 0x10 "no matching subscribers", which MQTT 5 leaves
            // optional, so deliveries are what tell.)
            try await within(.seconds(20), "subscribe/publish/unsubscribe rounds") {
                for round in 0..<rounds {
                    let topic = "\(root)/\(round)"
                    // Alternate an exact filter and a wildcard one (separate trie paths).
                    let filter = round.isMultiple(of: 2) ? topic : "\(root)/+"
                    try await subscriber.subscribe(filter, qos: .atLeastOnce)
                    try await publisher.publish(topic, payload: "in-\(round)", qos: .atLeastOnce)
                    try await inbox.wait(forCount: round + 1, "subscriber in round \(round)")
                    try await subscriber.unsubscribe([filter])
                    try await publisher.publish(topic, payload: "out-\(round)", qos: .atLeastOnce)
                }
            }
            try await inbox.wait(forCount: rounds)
            let received = try await inbox.settled()
            #expect(received.map(\.payload.string) == (0..<rounds).map { "in-\($0)" })
            #expect(broker.statistics.subscriptions == 0)
            #expect(try await broker.perLoopState().map(\.indexEntries) == [0, 0])
        }
    }

    // MARK: session takeover

    @Test(
        "a resumed session taken over from the other loop keeps subscriptions, in-flight and queued messages",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func takeoverFromTheOtherLoopResumesTheSession(version: MQTTProtocolVersion) async throws {
        // Two messages in flight per client; the rest of a burst waits in the session's queue.
        try await SocketBroker.with(configure: { $0.limits.maximumInflight = 2 }) { broker in
            let clientID = socketClientID("roamer")
            let root = socketTopicRoot("takeover")
            let persistent: (inout MQTTClient.Configuration) -> Void = {
                $0.cleanStart = false
                if version == .v5 { $0.connectProperties.sessionExpiryInterval = 300 }
            }
            let old = broker.client(clientID, version: version) {
                persistent(&$0)
                $0.automaticAcknowledgement = false
            }
            let oldInbox = SocketInbox(old)
            let firstConnAck = try await old.connect()
            #expect(!firstConnAck.sessionPresent)
            let oldLoop = try broker.loopIndex(of: old)
            try await old.subscribe("\(root)/#", qos: .atLeastOnce)

            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            try await within(.seconds(10), "publishing the burst") {
                for index in 0..<6 {
                    let ack = try await publisher.publish("\(root)/a", payload: "m\(index)", qos: .atLeastOnce)
                    #expect(ack?.reasonCode == .success)
                }
            }
            // The old connection holds m0 and m1 unacknowledged; m2...m5 are queued.
            try await oldInbox.wait(forCount: 2)
            #expect(try await oldInbox.settled().map(\.payload.string) == ["m0", "m1"])

            let new = broker.client(clientID, version: version, configure: persistent)
            let newInbox = SocketInbox(new)
            let connAck = try await broker.connect(new, onLoop: 1 - oldLoop)
            #expect(connAck.sessionPresent)

            try await eventually("the old connection to close") { !old.isConnected }
            let closed = try #require(old.lastCloseReason)
            #expect(!closed.initiatedByClient)
            if version == .v5 {
                #expect(closed.serverReasonCode == .sessionTakenOver)
            } else {
                #expect(closed.serverDisconnect == nil, "MQTT 3.1.1 has no DISCONNECT from the server")
            }

            let resumed = try await newInbox.wait(forCount: 6)
            #expect(resumed.map(\.payload.string) == ["m0", "m1", "m2", "m3", "m4", "m5"])
            #expect(
                resumed.map(\.dup) == [true, true, false, false, false, false],
                "in-flight messages re-sent with DUP"
            )
            #expect(resumed.allSatisfy { $0.qos == .atLeastOnce })

            // The subscription moved to the new loop: live messages arrive there.
            let live = try await within(.seconds(5), "publishing after the takeover") {
                try await publisher.publish("\(root)/b", payload: "live", qos: .atLeastOnce)
            }
            #expect(live?.reasonCode == .success)
            try await newInbox.wait(forCount: 7)
            #expect(try await newInbox.settled().map(\.payload.string).last == "live")
            #expect(oldInbox.count == 2, "nothing reaches the old connection after the takeover")
            #expect(broker.statistics.subscriptions == 1)
            #expect(broker.statistics.sessions == 2)
            #expect(try await broker.perLoopState().map(\.indexEntries) == [1, 1])
        }
    }

    @Test("a clean-start connection on the other loop discards the old session and its subscriptions")
    func cleanStartTakeoverFromTheOtherLoopDiscardsTheSession() async throws {
        try await SocketBroker.with { broker in
            let clientID = socketClientID("roamer")
            let root = socketTopicRoot("clean-takeover")
            let old = broker.client(clientID) {
                $0.cleanStart = false
                $0.connectProperties.sessionExpiryInterval = 300
            }
            try await old.connect()
            let oldLoop = try broker.loopIndex(of: old)
            try await old.subscribe("\(root)/#", qos: .atLeastOnce)
            #expect(broker.statistics.subscriptions == 1)

            let new = broker.client(clientID)
            let connAck = try await broker.connect(new, onLoop: 1 - oldLoop)
            #expect(!connAck.sessionPresent)
            try await eventually("the old connection to close") { !old.isConnected }
            #expect(old.lastCloseReason?.serverReasonCode == .sessionTakenOver)

            try await eventually("the old subscriptions to leave every replica") {
                broker.statistics.subscriptions == 0
            }
            #expect(try await broker.perLoopState().map(\.indexEntries) == [0, 0])
            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            let sentBefore = broker.statistics.messagesSent
            try await publisher.publish("\(root)/x", payload: "nobody", qos: .atLeastOnce)
            try await Task.sleep(for: .milliseconds(200))
            #expect(broker.statistics.messagesSent == sentBefore, "a message went to the discarded subscription")
        }
    }

    // MARK: shared subscriptions

    @Test(
        "a shared subscription with members on both loops gives each message to exactly one member",
        arguments: [QoS.atMostOnce, .atLeastOnce]
    )
    func sharedSubscriptionAcrossLoops(qos: QoS) async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("shared")
            let members = (0..<4).map { broker.client(socketClientID("worker\($0)")) }
            let memberInboxes = members.map { SocketInbox($0) }
            for member in members {
                try await member.connect()
                let subAck = try await member.subscribe("$share/workers/\(root)/#", qos: .atLeastOnce)
                #expect(subAck.reasonCodes == [.grantedQoS1])
            }
            let memberLoops = try members.map { try broker.loopIndex(of: $0) }
            #expect(Set(memberLoops) == [0, 1], "members on both loops")
            let observer = broker.client(socketClientID("observer"))
            let observerInbox = SocketInbox(observer)
            try await observer.connect()
            try await observer.subscribe("\(root)/#", qos: .atLeastOnce)

            let publishers = [broker.client(socketClientID("pub0")), broker.client(socketClientID("pub1"))]
            try await broker.connect(publishers[0], onLoop: 0)
            try await broker.connect(publishers[1], onLoop: 1)
            let perPublisher = 40
            try await within(.seconds(15), "publishing") {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, publisher) in publishers.enumerated() {
                        group.addTask {
                            for sequence in 0..<perPublisher {
                                try await publisher.publish(
                                    "\(root)/p\(index)",
                                    payload: "\(index):\(sequence)",
                                    qos: qos
                                )
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let total = 2 * perPublisher
            try await observerInbox.wait(forCount: total, "observer")
            try await eventually("the members to receive \(total) messages between them") {
                memberInboxes.map(\.count).reduce(0, +) >= total
            }
            try await Task.sleep(for: .milliseconds(300))
            let perMember = memberInboxes.map { $0.all.map(\.payload.string) }
            let everything = perMember.flatMap { $0 }
            #expect(everything.count == total, "each message to exactly one member")
            #expect(Set(everything).count == total, "no message twice")
            #expect(Set(everything) == Set(observerInbox.all.map(\.payload.string)))
            #expect(perMember.allSatisfy { !$0.isEmpty }, "every member gets a share: \(perMember.map(\.count))")
            // Within one member, one publisher's messages keep their order.
            for messages in perMember {
                for publisher in 0..<2 {
                    let sequences = messages.compactMap { payload -> Int? in
                        let parts = payload.split(separator: ":")
                        return parts.first == "\(publisher)" ? Int(parts[1]) : nil
                    }
                    #expect(sequences == sequences.sorted())
                }
            }
        }
    }

    // MARK: retained messages

    @Test("retained messages set, replaced and deleted from one loop are seen by subscribers on the other")
    func retainedMessagesAcrossLoops() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("retained")
            let publisher = broker.client(socketClientID("pub"))
            try await broker.connect(publisher, onLoop: 0)
            try await within(.seconds(5), "retaining") {
                try await publisher.publish("\(root)/a", payload: "1", qos: .atLeastOnce, retain: true)
                try await publisher.publish("\(root)/b", payload: "2", qos: .atMostOnce, retain: true)
                try await publisher.publish("\(root)/c", payload: "3", qos: .exactlyOnce, retain: true)
                try await publisher.publish("\(root)/c", payload: "3b", qos: .atLeastOnce, retain: true)
            }
            try await eventually("three retained messages") { broker.statistics.retainedMessages == 3 }

            let first = broker.client(socketClientID("first"), version: .v3_1_1)
            let firstInbox = SocketInbox(first)
            try await broker.connect(first, onLoop: 1)
            try await first.subscribe("\(root)/+", qos: .exactlyOnce)
            let retained = try await firstInbox.wait(forCount: 3)
            #expect(
                Set(retained.map { "\($0.topic)=\($0.payload.string)" }) == [
                    "\(root)/a=1", "\(root)/b=2", "\(root)/c=3b",
                ]
            )
            #expect(retained.allSatisfy { $0.retain })
            // Delivered at the QoS it was published with (capped by the subscription).
            #expect(retained.first { $0.topic == "\(root)/b" }?.qos == .atMostOnce)
            #expect(retained.first { $0.topic == "\(root)/a" }?.qos == .atLeastOnce)

            // A live retained publish reaches current subscribers without the retain flag.
            try await publisher.publish("\(root)/a", payload: "1b", qos: .atLeastOnce, retain: true)
            let live = try await firstInbox.wait(forCount: 4)[3]
            #expect(live.payload.string == "1b" && !live.retain)

            // Deleted from the other loop.
            try await first.publish("\(root)/b", payload: "", qos: .atLeastOnce, retain: true)
            try await eventually("the deletion") { broker.statistics.retainedMessages == 2 }

            let second = broker.client(socketClientID("second"))
            let secondInbox = SocketInbox(second)
            try await broker.connect(second, onLoop: 0)
            try await second.subscribe("\(root)/#", qos: .atLeastOnce)
            try await secondInbox.wait(forCount: 2)
            let now = try await secondInbox.settled()
            #expect(Set(now.map { "\($0.topic)=\($0.payload.string)" }) == ["\(root)/a=1b", "\(root)/c=3b"])
            #expect(now.allSatisfy { $0.retain })
        }
    }

    // MARK: wills

    @Test("a will published on one loop reaches a watcher on the other; a retained will is kept")
    func willAcrossLoops() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("will")
            let watcher = broker.client(socketClientID("watcher"))
            let watcherInbox = SocketInbox(watcher)
            try await broker.connect(watcher, onLoop: 1)
            try await watcher.subscribe("\(root)/#", qos: .atLeastOnce)

            for (index, version) in [MQTTProtocolVersion.v3_1_1, .v5].enumerated() {
                let device = broker.client(socketClientID("device"), version: version) {
                    $0.will = ConnectPacket.Will(
                        topic: "\(root)/device\(index)",
                        payload: ByteBuffer(string: "offline \(index)"),
                        qos: .atLeastOnce,
                        retain: true
                    )
                }
                try await broker.connect(device, onLoop: 0)
                await device.close()
                let will = try await watcherInbox.wait(forCount: index + 1)[index]
                #expect(will.topic == "\(root)/device\(index)")
                #expect(will.payload.string == "offline \(index)")
                #expect(will.qos == .atLeastOnce)
            }

            let late = broker.client(socketClientID("late"))
            let lateInbox = SocketInbox(late)
            try await broker.connect(late, onLoop: 1)
            try await late.subscribe("\(root)/#", qos: .atLeastOnce)
            let kept = try await lateInbox.wait(forCount: 2)
            #expect(Set(kept.map(\.payload.string)) == ["offline 0", "offline 1"])
            #expect(kept.allSatisfy { $0.retain })
        }
    }

    @Test("a delayed will is cancelled when the client comes back on the other loop in time, and sent when it does not")
    func delayedWillAndReconnectOnTheOtherLoop() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("delayed-will")
            let watcher = broker.client(socketClientID("watcher"))
            let watcherInbox = SocketInbox(watcher)
            try await watcher.connect()
            try await watcher.subscribe("\(root)/#", qos: .atLeastOnce)

            func device(_ clientID: String, _ name: String) -> MQTTClient {
                broker.client(clientID) {
                    $0.cleanStart = false
                    $0.connectProperties.sessionExpiryInterval = 60
                    $0.will = ConnectPacket.Will(
                        topic: "\(root)/\(name)",
                        payload: ByteBuffer(string: "\(name) gone"),
                        qos: .atLeastOnce,
                        properties: [.willDelayInterval(3)]
                    )
                }
            }
            // Comes back on the other loop within the delay: no will.
            let returningID = socketClientID("returning")
            let returning = device(returningID, "returning")
            try await returning.connect()
            let firstLoop = try broker.loopIndex(of: returning)
            // Gone for good: the will after about three seconds (long enough that the returning
            // client is back in time even with every test running at once on two cores).
            let vanishing = device(socketClientID("vanishing"), "vanishing")
            try await vanishing.connect()

            let dropped = ContinuousClock.now
            await returning.close()
            await vanishing.close()
            let back = device(returningID, "returning")
            let connAck = try await broker.connect(back, onLoop: 1 - firstLoop)
            #expect(connAck.sessionPresent)

            let will = try await watcherInbox.wait(forCount: 1, within: .seconds(15))[0]
            #expect(will.topic == "\(root)/vanishing")
            #expect(ContinuousClock.now - dropped >= .milliseconds(2900), "the will waited for its delay")
            let all = try await watcherInbox.settled(after: .milliseconds(500))
            #expect(all.map(\.topic) == ["\(root)/vanishing"], "the returning client's will is not sent")
        }
    }

    // MARK: churn

    @Test("200 connects and disconnects while traffic flows: no message lost, nothing leaks")
    func connectionChurnWhileTrafficFlows() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("churn")
            let baseline = broker.statistics
            #expect(baseline.connections == 0 && baseline.sessions == 0 && baseline.subscriptions == 0)

            let publisher = broker.client(socketClientID("traffic-pub"))
            let subscribers = [
                broker.client(socketClientID("traffic-sub0")), broker.client(socketClientID("traffic-sub1")),
            ]
            let inboxes = subscribers.map { SocketInbox($0) }
            try await broker.connect(subscribers[0], onLoop: 0)
            try await broker.connect(subscribers[1], onLoop: 1)
            try await broker.connect(publisher, onLoop: 0)
            for subscriber in subscribers { try await subscriber.subscribe("\(root)/traffic", qos: .atLeastOnce) }
            let steady = broker.statistics

            let churnDone = SocketFlag()
            let traffic = Task {
                var sent = 0
                while !churnDone.isSet || sent < 200, sent < 5_000 {
                    try await publisher.publish("\(root)/traffic", payload: "\(sent)", qos: .atLeastOnce)
                    sent += 1
                }
                return sent
            }
            try await within(.seconds(30), "200 connects and disconnects") {
                for wave in 0..<10 {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for slot in 0..<20 {
                            let index = wave * 20 + slot
                            group.addTask {
                                try await churn(index, broker: broker, root: root)
                            }
                        }
                        try await group.waitForAll()
                    }
                }
            }
            churnDone.set()
            let sent = try await within(.seconds(20), "the traffic") { try await traffic.value }

            for (index, inbox) in inboxes.enumerated() {
                try await inbox.wait(forCount: sent, within: .seconds(10), "traffic subscriber \(index)")
                let received = try await inbox.settled(after: .milliseconds(100))
                #expect(received.map(\.payload.string) == (0..<sent).map { "\($0)" }, "subscriber \(index)")
            }
            try await eventually("connections, sessions and subscriptions back to the steady state") {
                let now = broker.statistics
                return now.connections == steady.connections && now.sessions == steady.sessions
                    && now.subscriptions == steady.subscriptions
            }
            #expect(steady.connections == 3 && steady.sessions == 3 && steady.subscriptions == 2)
            #expect(try await broker.perLoopState().map(\.indexEntries) == [2, 2])

            try await publisher.disconnect()
            for subscriber in subscribers { try await subscriber.disconnect() }
            try await eventually("everything back to the baseline") {
                let now = broker.statistics
                return now.connections == baseline.connections && now.sessions == baseline.sessions
                    && now.subscriptions == baseline.subscriptions
            }
            let loops = try await broker.perLoopState()
            #expect(loops.map(\.connections) == [0, 0], "connection handlers left on the loops")
            #expect(loops.map(\.indexEntries) == [0, 0], "subscriptions left in a loop's replica")
            #expect(broker.statistics.messagesDropped == 0)
        }
    }

    /// One short-lived client of the churn test: connects (alternating protocol versions),
    /// subscribes to the traffic and its own topic, and leaves in one of three ways.
    private func churn(_ index: Int, broker: SocketBroker, root: String) async throws {
        let version: MQTTProtocolVersion = index.isMultiple(of: 2) ? .v5 : .v3_1_1
        let client = broker.client(socketClientID("churn\(index)"), version: version) {
            $0.will = ConnectPacket.Will(topic: "\(root)/will/\(index)", payload: ByteBuffer(string: "x"))
        }
        try await client.connect()
        try await client.subscribe(
            [
                SubscribePacket.Subscription(
                    "\(root)/traffic",
                    qos: index.isMultiple(of: 3) ? .atMostOnce : .atLeastOnce
                ),
                SubscribePacket.Subscription("\(root)/+/\(index)", qos: .atLeastOnce),
            ]
        )
        switch index % 3 {
        case 0:
            try await client.disconnect()
        case 1:
            await client.close()  // no DISCONNECT: the will goes out, the clean session ends
        default:
            try await client.unsubscribe(["\(root)/traffic"])
            try await client.disconnect()
        }
    }

    // MARK: shutdown

    @Test("graceful shutdown disconnects every client on both loops (MQTT 5 with 0x8B) and stops listening")
    func gracefulShutdownWithConnectedClients() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("shutdown")
            // Accepted connections alternate loops, so this order puts each version on both.
            let versions: [MQTTProtocolVersion] = [.v5, .v5, .v3_1_1, .v3_1_1, .v5, .v5, .v3_1_1, .v3_1_1]
            var clients: [MQTTClient] = []
            for version in versions {
                let client = broker.client(socketClientID("c"), version: version)
                try await client.connect()
                try await client.subscribe("\(root)/#", qos: .atLeastOnce)
                clients.append(client)
            }
            let placement = try clients.map { ($0.configuration.protocolVersion, try broker.loopIndex(of: $0)) }
            for version in [MQTTProtocolVersion.v3_1_1, .v5] {
                #expect(
                    Set(placement.filter { $0.0 == version }.map(\.1)) == [0, 1],
                    "\(version) clients on both loops"
                )
            }
            #expect(broker.statistics.connections == versions.count)

            try await within(.seconds(10), "shutdown") { await broker.broker.shutdown(timeout: .seconds(5)) }
            try await eventually("every connection to be closed") { broker.statistics.connections == 0 }
            for client in clients {
                try await eventually("the client to see the close") { !client.isConnected }
                let reason = try #require(client.lastCloseReason)
                #expect(!reason.initiatedByClient)
                if client.configuration.protocolVersion == .v5 {
                    #expect(reason.serverReasonCode == .serverShuttingDown)
                } else {
                    #expect(reason.serverDisconnect == nil)
                }
            }
            #expect(try await broker.perLoopState().map(\.connections) == [0, 0])

            let late = broker.client(socketClientID("late"))
            let error = await #expect(throws: MQTTClientError.self) { try await late.connect() }
            #expect(error?.code == .connectionFailed)
        }
    }
}
