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
                $0.connectProperties.sessionExpiryInterval = 1
            }
            let subscriber = broker.client(clientID, configure: brief)
            try await broker.connect(subscriber, onLoop: 1)
            try await subscriber.subscribe("\(root)/#", qos: .atLeastOnce)
            try await subscriber.disconnect()
            let publisher = broker.client(socketClientID("pub"))
            try await broker.connect(publisher, onLoop: 0)
            try await publisher.publish("\(root)/queued", payload: "lost with the session", qos: .atLeastOnce)
            #expect(try await broker.perLoopState().map(\.indexEntries) == [1, 1])

            try await eventually("the session to expire", within: .seconds(5)) {
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
}
