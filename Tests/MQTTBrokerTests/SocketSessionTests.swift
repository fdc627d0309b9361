import MQTTClient
import MQTTCore
import NIOCore
import Synchronization
import Testing

@testable import MQTTBroker

/// Session state that has to survive a move between event loops, and limits that are counted
/// across loops, through real sockets.
@Suite("Sessions across event loops", .timeLimit(.minutes(1)))
struct SocketSessionTests {
    // A connection whose session is still being set up when a newer connection with the same
    // client identifier arrives must still be found and disconnected (MQTT-3.1.4-3: DISCONNECT
    // 0x8E, then closed): the registry settles a session only once its connection is attached.
    @Test("many concurrent connections with one client identifier settle to one connection and one session")
    func concurrentTakeoversSettle() async throws {
        try await SocketBroker.with { broker in
            let clientID = socketClientID("contested")
            let root = socketTopicRoot("contested")
            let persistent: (inout MQTTClient.Configuration) -> Void = {
                $0.cleanStart = false
                $0.connectProperties.sessionExpiryInterval = 300
            }
            var everyone: [MQTTClient] = []
            for _ in 0..<5 {
                let round = (0..<4).map { _ in broker.client(clientID, configure: persistent) }
                everyone += round
                // Connect and subscribe all at once; a client taken over at once may see its
                // CONNECT or SUBSCRIBE fail, which is fine.
                try await within(.seconds(10), "a round of concurrent connects") {
                    await withTaskGroup(of: Void.self) { group in
                        for client in round {
                            group.addTask {
                                _ = try? await client.connect()
                                _ = try? await client.subscribe("\(root)/#", qos: .atLeastOnce)
                            }
                        }
                    }
                }
            }
            // Exactly one survives: the session's current connection.
            try? await eventually("one connection left", within: .seconds(2)) { broker.statistics.connections == 1 }
            let survivors = everyone.filter(\.isConnected)
            #expect(survivors.count == 1, "\(survivors.count) connections with one client identifier still open")
            #expect(broker.statistics.connections == 1)
            #expect(broker.statistics.sessions == 1)
            for client in everyone where !client.isConnected {
                if let reason = client.lastCloseReason, !reason.initiatedByClient, let code = reason.serverReasonCode {
                    #expect(code == .sessionTakenOver)
                }
            }
            #expect(broker.statistics.subscriptions == 1)
            let loops = try await broker.perLoopState()
            #expect(loops.map(\.connections).reduce(0, +) == 1)
            #expect(loops.map(\.indexEntries) == [1, 1])

            // The session works: one message, once.
            guard survivors.count == 1, let survivor = survivors.first else { return }
            let inbox = SocketInbox(survivor)
            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            try await publisher.publish("\(root)/x", payload: "hello", qos: .atLeastOnce)
            try await inbox.wait(forCount: 1)
            #expect(try await inbox.settled().map(\.payload.string) == ["hello"])
        }
    }

    @Test("two connections resuming one session together: the older one is disconnected (0x8E), one stays")
    func twoResumingConnectionsLeaveOne() async throws {
        try await SocketBroker.with { broker in
            var zombies = 0
            for round in 0..<10 {
                let clientID = socketClientID("pair\(round)")
                let connect = ConnectPacket(
                    clientIdentifier: clientID,
                    cleanStart: false,
                    properties: [.sessionExpiryInterval(300)]
                )
                let first = try await SocketRawClient.open(port: broker.port)
                try await first.connect(connect)
                // Subscriptions make the takeover take a little longer (every loop's replica is
                // updated when the next session adopts them).
                let filters = (0..<50).map { SubscribePacket.Subscription("pair/\(round)/\($0)", qos: .atLeastOnce) }
                try await first.send(.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: filters)))
                try await first.next(.suback)
                let firstLoop = try #require(broker.loopIndex(of: clientID))
                // Two more CONNECTs with the same identifier, sent back to back, while the
                // first connection's session is being taken over.
                try await broker.steerNextConnection(toLoop: 1 - firstLoop)
                let second = try await SocketRawClient.open(port: broker.port)
                let third = try await SocketRawClient.open(port: broker.port)
                try await second.send(.connect(connect))
                try await third.send(.connect(connect))
                try await eventually("the first connection to be taken over") { first.isClosed }
                try await Task.sleep(for: .milliseconds(200))
                let open = [second, third].filter { !$0.isClosed }
                #expect(open.count == 1, "round \(round): \(open.count) of the two newer connections still open")
                if open.count > 1 { zombies += 1 }
                for connection in [second, third] where connection.isClosed {
                    let disconnect = connection.packets.compactMap { packet -> ReasonCode? in
                        if case .disconnect(let disconnect) = packet { disconnect.reasonCode } else { nil }
                    }
                    #expect(disconnect == [.sessionTakenOver])
                }
                #expect(broker.statistics.sessions == 1 + round)
                for connection in [first, second, third] { await connection.close() }
            }
            #expect(zombies == 0, "\(zombies) of 10 rounds left two connections with one client identifier")
        }
    }

    @Test("an inbound QoS 2 message awaiting PUBREL is released once after a takeover from the other loop")
    func inboundQoS2SurvivesTakeover() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("inbound-qos2")
            let subscriber = broker.client(socketClientID("sub"))
            let inbox = SocketInbox(subscriber)
            try await subscriber.connect()
            try await subscriber.subscribe("\(root)/#", qos: .exactlyOnce)

            let publisherID = socketClientID("pub")
            let connect = ConnectPacket(
                clientIdentifier: publisherID,
                cleanStart: false,
                properties: [.sessionExpiryInterval(300)]
            )
            let first = try await SocketRawClient.open(port: broker.port)
            try await first.connect(connect)
            let firstLoop = try #require(broker.loopIndex(of: publisherID))
            let publish = PublishPacket(
                topic: "\(root)/t",
                payload: ByteBuffer(string: "once"),
                qos: .exactlyOnce,
                packetIdentifier: 42
            )
            try await first.send(.publish(publish))
            try await first.next(.pubrec)
            try await inbox.wait(forCount: 1)

            // Taken over before PUBREL, from the other loop.
            try await broker.steerNextConnection(toLoop: 1 - firstLoop)
            let second = try await SocketRawClient.open(port: broker.port)
            let connAck = try await second.connect(connect)
            #expect(connAck.sessionPresent)
            #expect(broker.loopIndex(of: publisherID) == 1 - firstLoop)
            try await eventually("the first connection to be closed") { first.isClosed }
            guard case .disconnect(let disconnect) = try await first.next(.disconnect) else { return }
            #expect(disconnect.reasonCode == .sessionTakenOver)

            // The re-sent PUBLISH (DUP) is acknowledged but not delivered again; PUBREL completes.
            var again = publish
            again.dup = true
            try await second.send(.publish(again))
            guard case .pubrec(let pubrec) = try await second.next(.pubrec) else { return }
            #expect(pubrec.packetIdentifier == 42)
            try await second.send(.pubrel(PublishAckPacket(packetIdentifier: 42)))
            guard case .pubcomp(let pubcomp) = try await second.next(.pubcomp) else { return }
            #expect(pubcomp.packetIdentifier == 42 && pubcomp.reasonCode == .success)
            #expect(try await inbox.settled().map(\.payload.string) == ["once"])

            // Identifier 42 is free again: a new message with it is delivered.
            var next = publish
            next.payload = ByteBuffer(string: "twice")
            let mark = second.packets.count
            try await second.send(.publish(next))
            try await second.next(.pubrec, from: mark)
            try await second.send(.pubrel(PublishAckPacket(packetIdentifier: 42)))
            try await second.next(.pubcomp, from: mark)
            try await inbox.wait(forCount: 2)
            #expect(inbox.all.map(\.payload.string) == ["once", "twice"])
            await second.close()
        }
    }

    @Test("an outbound QoS 2 message released but not completed gets PUBREL, not PUBLISH, after a takeover")
    func outboundQoS2SurvivesTakeover() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("outbound-qos2")
            let subscriberID = socketClientID("sub")
            let connect = ConnectPacket(
                clientIdentifier: subscriberID,
                cleanStart: false,
                properties: [.sessionExpiryInterval(300)]
            )
            let first = try await SocketRawClient.open(port: broker.port)
            try await first.connect(connect)
            let firstLoop = try #require(broker.loopIndex(of: subscriberID))
            try await first.send(
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init("\(root)/#", qos: .exactlyOnce)]))
            )
            try await first.next(.suback)

            let publisher = broker.client(socketClientID("pub"))
            try await publisher.connect()
            try await publisher.publish("\(root)/a", payload: "released", qos: .exactlyOnce)
            try await publisher.publish("\(root)/b", payload: "unanswered", qos: .exactlyOnce)
            // The first is answered with PUBREC (the broker then sends PUBREL, left unanswered);
            // the second is not answered at all.
            try await eventually("two PUBLISH packets") {
                first.packets.filter { $0.type == .publish }.count == 2
            }
            let published = first.packets.compactMap { packet -> PublishPacket? in
                if case .publish(let publish) = packet { publish } else { nil }
            }
            let released = try #require(published.first { $0.payload.string == "released" }?.packetIdentifier)
            let unanswered = try #require(published.first { $0.payload.string == "unanswered" }?.packetIdentifier)
            try await first.send(.pubrec(PublishAckPacket(packetIdentifier: released)))
            guard case .pubrel(let pubrel) = try await first.next(.pubrel) else { return }
            #expect(pubrel.packetIdentifier == released)

            try await broker.steerNextConnection(toLoop: 1 - firstLoop)
            let second = try await SocketRawClient.open(port: broker.port)
            let connAck = try await second.connect(connect)
            #expect(connAck.sessionPresent)
            #expect(broker.loopIndex(of: subscriberID) == 1 - firstLoop)

            // MQTT 5 §4.4: PUBREL again for the released one, PUBLISH with DUP for the other.
            try await eventually("the resent packets") { second.packets.count >= 3 }
            let resent = Array(second.packets.dropFirst())  // after CONNACK
            #expect(resent.count == 2, "\(resent.map(\.type))")
            let resentRelease = resent.compactMap { packet -> UInt16? in
                if case .pubrel(let ack) = packet { ack.packetIdentifier } else { nil }
            }
            let resentPublishes = resent.compactMap { packet -> PublishPacket? in
                if case .publish(let publish) = packet { publish } else { nil }
            }
            #expect(resentRelease == [released])
            #expect(resentPublishes.map(\.payload.string) == ["unanswered"])
            #expect(resentPublishes.first?.dup == true)
            #expect(resentPublishes.first?.packetIdentifier == unanswered)
            try await second.send(.pubcomp(PublishAckPacket(packetIdentifier: released)))
            let mark = second.packets.count
            try await second.send(.pubrec(PublishAckPacket(packetIdentifier: unanswered)))
            guard case .pubrel(let last) = try await second.next(.pubrel, from: mark) else { return }
            #expect(last.packetIdentifier == unanswered)
            try await second.send(.pubcomp(PublishAckPacket(packetIdentifier: unanswered)))
            await second.close()
        }
    }

    @Test("an expired session leaves no subscription on any loop and no queued message")
    func sessionExpiryClearsEveryReplica() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("expiry")
            let clientID = socketClientID("brief")
            let brief: (inout MQTTClient.Configuration) -> Void = {
                $0.cleanStart = false
                // 10 s, so that the checks before it expires are done in time on a loaded machine
                // (a full parallel test run can stall the process for several seconds).
                $0.connectProperties.sessionExpiryInterval = 10
            }
            let subscriber = broker.client(clientID, configure: brief)
            try await broker.connect(subscriber, onLoop: 1)
            try await subscriber.subscribe("\(root)/#", qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = broker.client(socketClientID("pub"))
            try await broker.connect(publisher, onLoop: 0)
            try await publisher.publish("\(root)/queued", payload: "lost with the session", qos: .atLeastOnce)
            #expect(try await broker.perLoopState().map(\.indexEntries) == [1, 1])

            try await eventually("the session to expire", within: .seconds(40)) {
                broker.statistics.sessions == 1 && broker.statistics.subscriptions == 0
            }
            #expect(try await broker.perLoopState().map(\.indexEntries) == [0, 0])
            let sentBefore = broker.statistics.messagesSent
            try await publisher.publish("\(root)/after", payload: "nobody", qos: .atLeastOnce)

            let again = broker.client(clientID, configure: brief)
            let inbox = SocketInbox(again)
            let connAck = try await again.connect()
            #expect(!connAck.sessionPresent)
            #expect(try await inbox.settled().isEmpty)
            #expect(broker.statistics.messagesSent == sentBefore)
        }
    }

    @Test("the connection limit counts connections on both loops; a freed slot is usable again")
    func connectionLimitAcrossLoops() async throws {
        try await SocketBroker.with(configure: { $0.limits.maximumConnections = 4 }) { broker in
            var clients: [MQTTClient] = []
            for _ in 0..<4 {
                let client = broker.client()
                try await client.connect()
                clients.append(client)
            }
            #expect(Set(try clients.map { try broker.loopIndex(of: $0) }) == [0, 1])
            for version in [MQTTProtocolVersion.v5, .v3_1_1] {
                let refused = broker.client(version: version)
                let error = await #expect(throws: MQTTClientError.self) { try await refused.connect() }
                #expect(error?.code == .connectionRefused)
                #expect(error?.reasonCode == (version == .v5 ? .serverBusy : .serverUnavailable))
            }
            try await eventually("refused connections to be closed") { broker.statistics.connections == 4 }
            try await clients[0].disconnect()
            try await eventually("the slot to be free") { broker.statistics.connections == 3 }
            let late = broker.client()
            #expect(try await late.connect().reasonCode == .success)
        }
    }

    @Test("a message from the other loop carries every matching subscription identifier")
    func subscriptionIdentifiersAcrossLoops() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("identifiers")
            let subscriber = broker.client(socketClientID("sub"))
            let inbox = SocketInbox(subscriber)
            try await broker.connect(subscriber, onLoop: 1)
            try await subscriber.subscribe("\(root)/+/x", qos: .atLeastOnce, properties: [.subscriptionIdentifier(7)])
            try await subscriber.subscribe("\(root)/a/#", qos: .atMostOnce, properties: [.subscriptionIdentifier(9)])
            let publisher = broker.client(socketClientID("pub"))
            try await broker.connect(publisher, onLoop: 0)
            try await publisher.publish("\(root)/a/x", payload: "both", qos: .atLeastOnce)
            try await publisher.publish("\(root)/b/x", payload: "first only", qos: .atLeastOnce)
            try await inbox.wait(forCount: 2)
            let received = try await inbox.settled()
            #expect(received.map(\.payload.string) == ["both", "first only"])
            #expect(received.first.map { Set($0.properties.subscriptionIdentifiers) } == [7, 9])
            #expect(received.first?.qos == .atLeastOnce, "the highest QoS of the matching subscriptions")
            #expect(received.last?.properties.subscriptionIdentifiers == [7])
        }
    }

    // After a takeover from the other loop, messages still on their way to the old session
    // (routed there before the publisher's loop saw the new one) are forwarded with one more
    // hop; they must not be overtaken by later messages routed to the new session directly
    // (MQTT 5 §4.6). Session.adopt's fences keep the order.
    @Test("a subscriber hopping between loops while a publisher streams misses nothing and keeps the order")
    func subscriberHoppingLoopsDuringTraffic() async throws {
        try await SocketBroker.with { broker in
            let root = socketTopicRoot("hopping")
            let subscriberID = socketClientID("hopper")
            let persistent: (inout MQTTClient.Configuration) -> Void = {
                $0.cleanStart = false
                $0.connectProperties.sessionExpiryInterval = 300
            }
            var generations: [(client: MQTTClient, inbox: SocketInbox)] = []
            let first = broker.client(subscriberID, configure: persistent)
            generations.append((first, SocketInbox(first)))
            try await first.connect()
            try await first.subscribe("\(root)/#", qos: .atLeastOnce)
            var loop = try broker.loopIndex(of: first)

            // A publisher that keeps up to 100 QoS 1 messages in flight, so that messages are
            // on their way between loops whenever the session moves.
            let publisher = try await SocketRawClient.open(port: broker.port)
            try await publisher.connect(ConnectPacket(clientIdentifier: socketClientID("pub")))
            let hopsDone = SocketFlag()
            let traffic = Task {
                var sent = 0
                while !hopsDone.isSet || sent < 300, sent < 3_000 {
                    let publish = PublishPacket(
                        topic: "\(root)/stream",
                        payload: ByteBuffer(string: "\(sent)"),
                        qos: .atLeastOnce,
                        packetIdentifier: UInt16(sent % 60_000 + 1)
                    )
                    try await publisher.send(.publish(publish))
                    sent += 1
                    if sent.isMultiple(of: 50) {
                        try await eventually("PUBACKs to catch up") {
                            sent - publisher.packets.count { $0.type == .puback } <= 100
                        }
                    }
                }
                try await eventually("every PUBACK") { publisher.packets.count { $0.type == .puback } == sent }
                return sent
            }
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(2))
                loop = 1 - loop
                let next = broker.client(subscriberID, configure: persistent)
                generations.append((next, SocketInbox(next)))
                let connAck = try await broker.connect(next, onLoop: loop)
                #expect(connAck.sessionPresent)
            }
            hopsDone.set()
            let sent = try await within(.seconds(20), "the stream") { try await traffic.value }

            // Every message arrives (re-sends of unacknowledged ones may repeat, with DUP), and
            // the first arrivals follow the publisher's order.
            let inboxes = generations.map(\.inbox)
            try? await eventually("every message", within: .seconds(10)) {
                Set(inboxes.flatMap { $0.all.map(\.payload.string) }).count == sent
            }
            var firstArrivals: [Int] = []
            var seen = Set<Int>()
            for generation in generations {
                for message in generation.inbox.all {
                    guard let sequence = Int(message.payload.string) else { continue }
                    if seen.insert(sequence).inserted {
                        firstArrivals.append(sequence)
                    } else {
                        #expect(message.dup, "message \(sequence) delivered twice without DUP")
                    }
                }
            }
            #expect(firstArrivals.count == sent, "\(sent - firstArrivals.count) messages lost")
            let outOfOrder = zip(firstArrivals, firstArrivals.dropFirst()).filter { $0 >= $1 }
            // Where each out-of-order pair arrived: connection number, position, payload.
            let places = outOfOrder.prefix(3).map { pair in
                generations.enumerated().flatMap { index, generation in
                    generation.inbox.all.enumerated().compactMap { position, message in
                        [pair.0, pair.1].contains(Int(message.payload.string) ?? -1)
                            ? "connection \(index) #\(position): \(message.payload.string)\(message.dup ? " (DUP)" : "")"
                            : nil
                    }
                }
            }
            #expect(outOfOrder.isEmpty, "first arrivals out of order: \(outOfOrder.prefix(3)); \(places)")
            #expect(broker.statistics.subscriptions == 1)
            #expect(broker.statistics.messagesDropped == 0)
        }
    }
}
