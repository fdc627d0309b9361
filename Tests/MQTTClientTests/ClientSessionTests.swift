import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

@Suite("Client session state")
struct ClientSessionTests {
    private func publish(_ topic: String = "t", qos: QoS, id: UInt16) -> PublishPacket {
        PublishPacket(topic: topic, payload: ByteBuffer(string: "p"), qos: qos, packetIdentifier: id)
    }

    @Test("packet identifiers skip those in flight and wrap around without 0")
    func identifiers() {
        var session = ClientSession()
        let first = session.allocateIdentifier()!
        session.trackOutbound(publish(qos: .atLeastOnce, id: first))
        let second = session.allocateRequestIdentifier()!
        #expect(first == 1)
        #expect(second == 2)
        // Walk the counter round; 1 and 2 are still in flight and must be skipped.
        var seen = Set<UInt16>()
        for _ in 0..<(Int(UInt16.max) - 2) {
            let id = session.allocateIdentifier()!
            #expect(id != 0 && id != first && id != second)
            seen.insert(id)
        }
        #expect(seen.count == Int(UInt16.max) - 2)
        #expect(session.allocateIdentifier() == 3)
    }

    @Test("identifiers run out only when all 65535 are in flight")
    func exhaustion() {
        var session = ClientSession()
        for _ in 0..<Int(UInt16.max) {
            #expect(session.allocateRequestIdentifier() != nil)
        }
        #expect(session.allocateIdentifier() == nil)
        session.releaseRequestIdentifier(42)
        #expect(session.allocateIdentifier() == 42)
    }

    @Test("QoS 1: PUBACK completes; a second PUBACK is unknown")
    func qos1() {
        var session = ClientSession()
        session.trackOutbound(publish(qos: .atLeastOnce, id: 7))
        #expect(session.inflightCount == 1)
        let ack = PublishAckPacket(packetIdentifier: 7, reasonCode: .noMatchingSubscribers)
        #expect(session.receivedPuback(ack) == .completed(ack))
        #expect(session.receivedPuback(ack) == .unknown)
        #expect(session.inflightCount == 0)
    }

    @Test("QoS 2: PUBREC → PUBREL → PUBCOMP returns the PUBREC's reason code")
    func qos2() {
        var session = ClientSession()
        session.trackOutbound(publish(qos: .exactlyOnce, id: 9))
        let pubrec = PublishAckPacket(packetIdentifier: 9, reasonCode: .noMatchingSubscribers)
        #expect(session.receivedPubrec(pubrec) == .sendPubrel(9))
        #expect(session.receivedPuback(PublishAckPacket(packetIdentifier: 9)) == .unknown)
        #expect(session.receivedPubcomp(PublishAckPacket(packetIdentifier: 9)) == .completed(pubrec))
        #expect(session.inflightCount == 0)
    }

    @Test("QoS 2: a failing PUBREC ends the exchange")
    func qos2Failure() {
        var session = ClientSession()
        session.trackOutbound(publish(qos: .exactlyOnce, id: 3))
        let pubrec = PublishAckPacket(packetIdentifier: 3, reasonCode: .notAuthorized)
        #expect(session.receivedPubrec(pubrec) == .completed(pubrec))
        #expect(session.inflightCount == 0)
    }

    @Test("re-sends keep order: PUBLISH with DUP (or without, if the server lost the session), PUBREL after PUBREC")
    func retransmissions() {
        var session = ClientSession()
        var aliased = publish("a/1", qos: .atLeastOnce, id: 5)
        aliased.properties.topicAlias = 1
        session.trackOutbound(aliased)
        session.trackOutbound(publish("a/2", qos: .exactlyOnce, id: 2))
        session.trackOutbound(publish("a/3", qos: .exactlyOnce, id: 8))
        _ = session.receivedPubrec(PublishAckPacket(packetIdentifier: 2))

        let resumed = session.retransmissions(sessionPresent: true)
        #expect(resumed.count == 3)
        guard case .publish(let first) = resumed[0], case .pubrel(let second) = resumed[1],
            case .publish(let third) = resumed[2]
        else {
            Issue.record("unexpected retransmissions \(resumed)")
            return
        }
        #expect(first.packetIdentifier == 5 && first.dup && first.topic == "a/1")
        #expect(first.properties.topicAlias == nil)
        #expect(second.packetIdentifier == 2)
        #expect(third.packetIdentifier == 8 && third.dup)

        let fresh = session.retransmissions(sessionPresent: false)
        guard case .publish(let again) = fresh[0] else {
            Issue.record("expected a PUBLISH")
            return
        }
        #expect(!again.dup)
    }

    @Test("inbound QoS 2 duplicates are not delivered twice; PUBREL ends the exchange")
    func inboundQoS2() {
        var session = ClientSession()
        let message = publish(qos: .exactlyOnce, id: 11)
        let pubrec = MQTTPacket.pubrec(PublishAckPacket(packetIdentifier: 11))
        #expect(session.receivedPublish(message, automaticAcknowledgement: true) == .deliver(ack: pubrec))
        var duplicate = message
        duplicate.dup = true
        #expect(session.receivedPublish(duplicate, automaticAcknowledgement: true) == .duplicate(ack: pubrec))
        session.receivedPubrel(11)
        #expect(session.receivedPublish(message, automaticAcknowledgement: true) == .deliver(ack: pubrec))
    }

    @Test("manual mode records what is owed; acknowledging twice finds nothing")
    func manualAcknowledgements() {
        var session = ClientSession()
        #expect(
            session.receivedPublish(publish(qos: .atLeastOnce, id: 1), automaticAcknowledgement: false)
                == .deliver(ack: nil)
        )
        #expect(
            session.receivedPublish(publish(qos: .exactlyOnce, id: 2), automaticAcknowledgement: false)
                == .deliver(ack: nil)
        )
        #expect(
            session.receivedPublish(publish(qos: .exactlyOnce, id: 2), automaticAcknowledgement: false)
                == .duplicate(ack: nil)
        )
        #expect(session.takePendingAcknowledgement(1) == .puback)
        #expect(session.takePendingAcknowledgement(1) == nil)
        #expect(session.takePendingAcknowledgement(2) == .pubrec)
        // Once PUBREC went out, a duplicate gets PUBREC again.
        #expect(
            session.receivedPublish(publish(qos: .exactlyOnce, id: 2), automaticAcknowledgement: false)
                == .duplicate(ack: .pubrec(PublishAckPacket(packetIdentifier: 2)))
        )
    }

    @Test("a new connection voids owed acknowledgements so re-deliveries can be acknowledged")
    func connectionReplaced() {
        var session = ClientSession()
        _ = session.receivedPublish(publish(qos: .exactlyOnce, id: 4), automaticAcknowledgement: false)
        session.connectionReplaced()
        #expect(session.takePendingAcknowledgement(4) == nil)
        #expect(
            session.receivedPublish(publish(qos: .exactlyOnce, id: 4), automaticAcknowledgement: false)
                == .deliver(ack: nil)
        )
    }
}
