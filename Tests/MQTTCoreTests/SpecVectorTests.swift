import MQTTCore
import NIOCore
import Testing

/// Hand-assembled byte vectors following the packet layouts of MQTT 3.1.1 §3 and MQTT 5 §3:
/// each is decoded and compared field by field, and (when it is the canonical encoding) the
/// expected packet is encoded and compared byte for byte.
@Suite("Specification byte vectors")
struct SpecVectorTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var version: MQTTProtocolVersion
        var bytes: [UInt8]
        var packet: MQTTPacket
        /// Whether encoding `packet` gives exactly `bytes` (some valid forms are not what we send).
        var canonical = true

        var testDescription: String { "\(name) (MQTT \(version))" }
    }

    static func text(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

    static let vectors: [Vector] = [
        // CONNECT, MQTT 3.1.1 §3.1: "MQTT", level 4, clean session, keep alive 60, client id "abc".
        Vector(
            name: "CONNECT",
            version: .v3_1_1,
            bytes: [
                0x10, 0x0F, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03, 0x61, 0x62, 0x63,
            ],
            packet: .connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "abc", keepAlive: 60))
        ),
        // MQTT 3.1: "MQIsdp", level 3.
        Vector(
            name: "CONNECT MQIsdp",
            version: .v3_1,
            bytes: [
                0x10, 0x11, 0x00, 0x06, 0x4D, 0x51, 0x49, 0x73, 0x64, 0x70, 0x03, 0x02, 0x00, 0x3C,
                0x00, 0x03, 0x61, 0x62, 0x63,
            ],
            packet: .connect(ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "abc"))
        ),
        // MQTT 5 §3.1: flags 0xC2 (user name, password, clean start), properties session expiry
        // 3600 and receive maximum 20.
        Vector(
            name: "CONNECT with properties, user name and password",
            version: .v5,
            bytes: [
                0x10, 0x1E, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x05, 0xC2, 0x00, 0x3C,
                0x08, 0x11, 0x00, 0x00, 0x0E, 0x10, 0x21, 0x00, 0x14,
                0x00, 0x03, 0x61, 0x62, 0x63, 0x00, 0x01, 0x75, 0x00, 0x01, 0x70,
            ],
            packet: .connect(
                ConnectPacket(
                    clientIdentifier: "abc",
                    username: "u",
                    password: text("p"),
                    properties: [.sessionExpiryInterval(3600), .receiveMaximum(20)]
                )
            )
        ),
        // Flags 0xAE: user name, will retain, will QoS 1, will, clean start; will delay 5.
        Vector(
            name: "CONNECT with will",
            version: .v5,
            bytes: [
                0x10, 0x21, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x05, 0xAE, 0x00, 0x0A, 0x00,
                0x00, 0x01, 0x63,
                0x05, 0x18, 0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x77, 0x2F, 0x74, 0x00, 0x03, 0x62, 0x79, 0x65,
                0x00, 0x01, 0x75,
            ],
            packet: .connect(
                ConnectPacket(
                    clientIdentifier: "c",
                    keepAlive: 10,
                    username: "u",
                    will: .init(
                        topic: "w/t",
                        payload: text("bye"),
                        qos: .atLeastOnce,
                        retain: true,
                        properties: [.willDelayInterval(5)]
                    )
                )
            )
        ),
        Vector(
            name: "CONNACK session present",
            version: .v3_1_1,
            bytes: [0x20, 0x02, 0x01, 0x00],
            packet: .connack(ConnAckPacket(sessionPresent: true))
        ),
        Vector(
            name: "CONNACK not authorized (return code 5)",
            version: .v3_1_1,
            bytes: [0x20, 0x02, 0x00, 0x05],
            packet: .connack(ConnAckPacket(reasonCode: .notAuthorized))
        ),
        Vector(
            name: "CONNACK success",
            version: .v5,
            bytes: [0x20, 0x03, 0x00, 0x00, 0x00],
            packet: .connack(ConnAckPacket())
        ),
        Vector(
            name: "CONNACK not authorized (0x87)",
            version: .v5,
            bytes: [0x20, 0x03, 0x00, 0x87, 0x00],
            packet: .connack(ConnAckPacket(reasonCode: .notAuthorized))
        ),
        Vector(
            name: "CONNACK with properties",
            version: .v5,
            bytes: [0x20, 0x0A, 0x00, 0x00, 0x07, 0x24, 0x01, 0x25, 0x00, 0x22, 0x00, 0x0A],
            packet: .connack(ConnAckPacket(properties: [.maximumQoS(1), .retainAvailable(0), .topicAliasMaximum(10)]))
        ),
        Vector(
            name: "PUBLISH QoS 0",
            version: .v3_1_1,
            bytes: [0x30, 0x07, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x68, 0x69],
            packet: .publish(PublishPacket(topic: "a/b", payload: text("hi")))
        ),
        Vector(
            name: "PUBLISH QoS 1 retained",
            version: .v3_1_1,
            bytes: [0x33, 0x09, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x0A, 0x68, 0x69],
            packet: .publish(
                PublishPacket(topic: "a/b", payload: text("hi"), qos: .atLeastOnce, retain: true, packetIdentifier: 10)
            )
        ),
        Vector(
            name: "PUBLISH QoS 2 DUP",
            version: .v3_1_1,
            bytes: [0x3C, 0x07, 0x00, 0x03, 0x61, 0x2F, 0x62, 0xFF, 0xFE],
            packet: .publish(
                PublishPacket(
                    topic: "a/b",
                    payload: ByteBuffer(),
                    qos: .exactlyOnce,
                    dup: true,
                    packetIdentifier: 0xFFFE
                )
            )
        ),
        Vector(
            name: "PUBLISH QoS 0 without properties",
            version: .v5,
            bytes: [0x30, 0x08, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x00, 0x68, 0x69],
            packet: .publish(PublishPacket(topic: "a/b", payload: text("hi")))
        ),
        Vector(
            name: "PUBLISH QoS 2 DUP with properties",
            version: .v5,
            bytes: [
                0x3C, 0x10, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x12, 0x34,
                0x06, 0x01, 0x01, 0x03, 0x00, 0x01, 0x74, 0x68, 0x69,
            ],
            packet: .publish(
                PublishPacket(
                    topic: "a/b",
                    payload: text("hi"),
                    qos: .exactlyOnce,
                    dup: true,
                    packetIdentifier: 0x1234,
                    properties: [.payloadFormatIndicator(1), .contentType("t")]
                )
            )
        ),
        Vector(
            name: "PUBLISH empty topic with topic alias",
            version: .v5,
            bytes: [0x32, 0x08, 0x00, 0x00, 0x00, 0x05, 0x03, 0x23, 0x00, 0x02],
            packet: .publish(
                PublishPacket(
                    topic: "",
                    payload: ByteBuffer(),
                    qos: .atLeastOnce,
                    packetIdentifier: 5,
                    properties: [.topicAlias(2)]
                )
            )
        ),
        Vector(
            name: "PUBLISH two subscription identifiers",
            version: .v5,
            bytes: [0x30, 0x0A, 0x00, 0x01, 0x74, 0x05, 0x0B, 0x01, 0x0B, 0x80, 0x01, 0x21],
            packet: .publish(
                PublishPacket(
                    topic: "t",
                    payload: text("!"),
                    properties: [.subscriptionIdentifier(1), .subscriptionIdentifier(128)]
                )
            )
        ),
        Vector(
            name: "PUBACK",
            version: .v3_1_1,
            bytes: [0x40, 0x02, 0x00, 0x07],
            packet: .puback(.init(packetIdentifier: 7))
        ),
        Vector(
            name: "PUBREC",
            version: .v3_1_1,
            bytes: [0x50, 0x02, 0x00, 0x07],
            packet: .pubrec(.init(packetIdentifier: 7))
        ),
        Vector(
            name: "PUBREL",
            version: .v3_1_1,
            bytes: [0x62, 0x02, 0x00, 0x07],
            packet: .pubrel(.init(packetIdentifier: 7))
        ),
        Vector(
            name: "PUBCOMP",
            version: .v3_1_1,
            bytes: [0x70, 0x02, 0xAB, 0xCD],
            packet: .pubcomp(.init(packetIdentifier: 0xABCD))
        ),
        // MQTT 5 §3.4.2.1: remaining length 2 means success with no properties.
        Vector(
            name: "PUBACK success",
            version: .v5,
            bytes: [0x40, 0x02, 0x00, 0x07],
            packet: .puback(.init(packetIdentifier: 7))
        ),
        Vector(
            name: "PUBACK reason code only (remaining length 3)",
            version: .v5,
            bytes: [0x40, 0x03, 0x00, 0x07, 0x10],
            packet: .puback(.init(packetIdentifier: 7, reasonCode: .noMatchingSubscribers))
        ),
        Vector(
            name: "PUBREC reason code and reason string",
            version: .v5,
            bytes: [0x50, 0x0A, 0x00, 0x07, 0x80, 0x06, 0x1F, 0x00, 0x03, 0x62, 0x61, 0x64],
            packet: .pubrec(
                .init(packetIdentifier: 7, reasonCode: .unspecifiedError, properties: [.reasonString("bad")])
            )
        ),
        Vector(
            name: "PUBREL packet identifier not found",
            version: .v5,
            bytes: [0x62, 0x03, 0x00, 0x07, 0x92],
            packet: .pubrel(.init(packetIdentifier: 7, reasonCode: .packetIdentifierNotFound))
        ),
        Vector(
            name: "PUBCOMP success",
            version: .v5,
            bytes: [0x70, 0x02, 0x00, 0x01],
            packet: .pubcomp(.init(packetIdentifier: 1))
        ),
        Vector(
            name: "SUBSCRIBE two filters",
            version: .v3_1_1,
            bytes: [0x82, 0x0C, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2F, 0x23, 0x01, 0x00, 0x01, 0x62, 0x00],
            packet: .subscribe(
                SubscribePacket(
                    packetIdentifier: 1,
                    subscriptions: [.init("a/#", qos: .atLeastOnce), .init("b", qos: .atMostOnce)]
                )
            )
        ),
        // Options 0x2E: QoS 2, no local, retain as published, retain handling 2.
        Vector(
            name: "SUBSCRIBE options byte and subscription identifier",
            version: .v5,
            bytes: [0x82, 0x0B, 0x00, 0x02, 0x02, 0x0B, 0x05, 0x00, 0x03, 0x61, 0x2F, 0x2B, 0x2E],
            packet: .subscribe(
                SubscribePacket(
                    packetIdentifier: 2,
                    subscriptions: [
                        .init(
                            topicFilter: "a/+",
                            options: .init(
                                qos: .exactlyOnce,
                                noLocal: true,
                                retainAsPublished: true,
                                retainHandling: .doNotSend
                            )
                        )
                    ],
                    properties: [.subscriptionIdentifier(5)]
                )
            )
        ),
        // Options 0x19: QoS 1, retain as published, retain handling 1.
        Vector(
            name: "SUBSCRIBE retain handling 1",
            version: .v5,
            bytes: [0x82, 0x07, 0x00, 0x03, 0x00, 0x00, 0x01, 0x78, 0x19],
            packet: .subscribe(
                SubscribePacket(
                    packetIdentifier: 3,
                    subscriptions: [
                        .init(
                            topicFilter: "x",
                            options: .init(qos: .atLeastOnce, retainAsPublished: true, retainHandling: .sendIfNew)
                        )
                    ]
                )
            )
        ),
        Vector(
            name: "SUBACK",
            version: .v3_1_1,
            bytes: [0x90, 0x04, 0x00, 0x01, 0x01, 0x80],
            packet: .suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1, .unspecifiedError]))
        ),
        Vector(
            name: "SUBACK",
            version: .v5,
            bytes: [0x90, 0x05, 0x00, 0x02, 0x00, 0x02, 0x8F],
            packet: .suback(SubAckPacket(packetIdentifier: 2, reasonCodes: [.grantedQoS2, .topicFilterInvalid]))
        ),
        Vector(
            name: "UNSUBSCRIBE",
            version: .v3_1_1,
            bytes: [0xA2, 0x07, 0x00, 0x03, 0x00, 0x03, 0x61, 0x2F, 0x62],
            packet: .unsubscribe(UnsubscribePacket(packetIdentifier: 3, topicFilters: ["a/b"]))
        ),
        Vector(
            name: "UNSUBSCRIBE",
            version: .v5,
            bytes: [0xA2, 0x08, 0x00, 0x03, 0x00, 0x00, 0x03, 0x61, 0x2F, 0x62],
            packet: .unsubscribe(UnsubscribePacket(packetIdentifier: 3, topicFilters: ["a/b"]))
        ),
        Vector(
            name: "UNSUBACK",
            version: .v3_1_1,
            bytes: [0xB0, 0x02, 0x00, 0x03],
            packet: .unsuback(UnsubAckPacket(packetIdentifier: 3))
        ),
        Vector(
            name: "UNSUBACK",
            version: .v5,
            bytes: [0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11],
            packet: .unsuback(UnsubAckPacket(packetIdentifier: 3, reasonCodes: [.success, .noSubscriptionExisted]))
        ),
        Vector(name: "PINGREQ", version: .v3_1_1, bytes: [0xC0, 0x00], packet: .pingreq),
        Vector(name: "PINGRESP", version: .v3_1_1, bytes: [0xD0, 0x00], packet: .pingresp),
        Vector(name: "PINGREQ", version: .v5, bytes: [0xC0, 0x00], packet: .pingreq),
        Vector(name: "PINGRESP", version: .v5, bytes: [0xD0, 0x00], packet: .pingresp),
        Vector(name: "DISCONNECT", version: .v3_1_1, bytes: [0xE0, 0x00], packet: .disconnect(DisconnectPacket())),
        // MQTT 5 §3.14.2.1: remaining length 0 means normal disconnection.
        Vector(name: "DISCONNECT", version: .v5, bytes: [0xE0, 0x00], packet: .disconnect(DisconnectPacket())),
        Vector(
            name: "DISCONNECT with will message",
            version: .v5,
            bytes: [0xE0, 0x01, 0x04],
            packet: .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage))
        ),
        Vector(
            name: "DISCONNECT reason string",
            version: .v5,
            bytes: [0xE0, 0x08, 0x8B, 0x06, 0x1F, 0x00, 0x03, 0x62, 0x79, 0x65],
            packet: .disconnect(DisconnectPacket(reasonCode: .serverShuttingDown, properties: [.reasonString("bye")]))
        ),
        Vector(
            name: "AUTH success (remaining length 0)",
            version: .v5,
            bytes: [0xF0, 0x00],
            packet: .auth(AuthPacket())
        ),
        Vector(
            name: "AUTH continue authentication",
            version: .v5,
            bytes: [
                0xF0, 0x0F, 0x18, 0x0D, 0x15, 0x00, 0x05, 0x53, 0x43, 0x52, 0x41, 0x4D, 0x16, 0x00, 0x02, 0x01, 0x02,
            ],
            packet: .auth(
                AuthPacket(
                    reasonCode: .continueAuthentication,
                    properties: [.authenticationMethod("SCRAM"), .authenticationData(ByteBuffer(bytes: [1, 2]))]
                )
            )
        ),
        // Valid but not what the encoder produces.
        Vector(
            name: "PUBACK success with empty properties (remaining length 4)",
            version: .v5,
            bytes: [0x40, 0x04, 0x00, 0x07, 0x00, 0x00],
            packet: .puback(.init(packetIdentifier: 7)),
            canonical: false
        ),
        Vector(
            name: "DISCONNECT explicit normal reason (remaining length 1)",
            version: .v5,
            bytes: [0xE0, 0x01, 0x00],
            packet: .disconnect(DisconnectPacket()),
            canonical: false
        ),
        Vector(
            name: "DISCONNECT with empty properties (remaining length 2)",
            version: .v5,
            bytes: [0xE0, 0x02, 0x8E, 0x00],
            packet: .disconnect(DisconnectPacket(reasonCode: .sessionTakenOver)),
            canonical: false
        ),
        Vector(
            name: "PUBLISH QoS 0 payload that looks like a packet identifier",
            version: .v3_1_1,
            bytes: [0x30, 0x05, 0x00, 0x01, 0x74, 0x00, 0x01],
            packet: .publish(PublishPacket(topic: "t", payload: ByteBuffer(bytes: [0x00, 0x01])))
        ),
        // The codec tolerates a non-minimal remaining length, as most brokers do.
        Vector(
            name: "PINGREQ with two-byte remaining length",
            version: .v3_1_1,
            bytes: [0xC0, 0x80, 0x00],
            packet: .pingreq,
            canonical: false
        ),
    ]

    @Test("decodes", arguments: vectors)
    func decode(_ vector: Vector) throws {
        let packet = try Wire.decodeExactly(vector.bytes, version: vector.version)
        #expect(packet == vector.packet)
    }

    @Test("encodes", arguments: vectors.filter(\.canonical))
    func encode(_ vector: Vector) {
        #expect(Wire.encode(vector.packet, version: vector.version) == vector.bytes)
        #expect(vector.packet.encodedSize(version: vector.version) == vector.bytes.count)
    }

    /// Field-by-field checks of the richer vectors, so a wrong `==` could not hide a mistake.
    @Test("CONNECT fields")
    func connectFields() throws {
        let vector = try #require(Self.vectors.first { $0.name == "CONNECT with will" })
        let packet = try Wire.decodeExactly(vector.bytes, version: nil)
        guard case .connect(let connect) = packet else {
            Issue.record("expected CONNECT, got \(packet)")
            return
        }
        #expect(connect.protocolVersion == .v5)
        #expect(connect.clientIdentifier == "c")
        #expect(connect.cleanStart)
        #expect(connect.keepAlive == 10)
        #expect(connect.username == "u")
        #expect(connect.password == nil)
        #expect(connect.properties.isEmpty)
        let will = try #require(connect.will)
        #expect(will.topic == "w/t")
        #expect(will.payload == ByteBuffer(string: "bye"))
        #expect(will.qos == .atLeastOnce)
        #expect(will.retain)
        #expect(will.properties.willDelayInterval == 5)
        #expect(will.properties.count == 1)
    }

    @Test("PUBLISH fields")
    func publishFields() throws {
        let bytes: [UInt8] = [
            0x3C, 0x10, 0x00, 0x03, 0x61, 0x2F, 0x62, 0x12, 0x34, 0x06, 0x01, 0x01, 0x03, 0x00, 0x01, 0x74, 0x68, 0x69,
        ]
        guard case .publish(let publish) = try Wire.decodeExactly(bytes, version: .v5) else {
            Issue.record("expected PUBLISH")
            return
        }
        #expect(publish.topic == "a/b")
        #expect(publish.qos == .exactlyOnce)
        #expect(publish.dup)
        #expect(!publish.retain)
        #expect(publish.packetIdentifier == 0x1234)
        #expect(publish.properties.payloadFormatIndicator == 1)
        #expect(publish.properties.contentType == "t")
        #expect(Array(publish.payload.readableBytesView) == [0x68, 0x69])
        #expect(publish.firstByte == 0x3C)
    }

    @Test("SUBSCRIBE options fields")
    func subscribeFields() throws {
        guard
            case .subscribe(let subscribe) = try Wire.decodeExactly(
                [0x82, 0x0B, 0x00, 0x02, 0x02, 0x0B, 0x05, 0x00, 0x03, 0x61, 0x2F, 0x2B, 0x2E],
                version: .v5
            )
        else {
            Issue.record("expected SUBSCRIBE")
            return
        }
        #expect(subscribe.packetIdentifier == 2)
        #expect(subscribe.properties.subscriptionIdentifiers == [5])
        let subscription = try #require(subscribe.subscriptions.first)
        #expect(subscribe.subscriptions.count == 1)
        #expect(subscription.topicFilter == "a/+")
        #expect(subscription.options.qos == .exactlyOnce)
        #expect(subscription.options.noLocal)
        #expect(subscription.options.retainAsPublished)
        #expect(subscription.options.retainHandling == .doNotSend)
        #expect(subscription.options.byte == 0x2E)
    }

    @Test("PUBACK with only a reason code")
    func pubackFields() throws {
        guard case .puback(let ack) = try Wire.decodeExactly([0x40, 0x03, 0x00, 0x07, 0x10], version: .v5) else {
            Issue.record("expected PUBACK")
            return
        }
        #expect(ack.packetIdentifier == 7)
        #expect(ack.reasonCode == .noMatchingSubscribers)
        #expect(!ack.reasonCode.isFailure)
        #expect(ack.properties.isEmpty)
    }

    @Test("the fixed header's first byte per packet type (MQTT 5 §2.1.2, §2.1.3)")
    func firstBytes() {
        let expected: [(MQTTPacket, UInt8)] = [
            (.connect(ConnectPacket(clientIdentifier: "c")), 0x10),
            (.connack(ConnAckPacket()), 0x20),
            (.publish(PublishPacket(topic: "t", payload: ByteBuffer())), 0x30),
            (.publish(PublishPacket(topic: "t", payload: ByteBuffer(), retain: true)), 0x31),
            (.publish(PublishPacket(topic: "t", payload: ByteBuffer(), qos: .atLeastOnce, packetIdentifier: 1)), 0x32),
            (.publish(PublishPacket(topic: "t", payload: ByteBuffer(), qos: .exactlyOnce, packetIdentifier: 1)), 0x34),
            (.puback(.init(packetIdentifier: 1)), 0x40),
            (.pubrec(.init(packetIdentifier: 1)), 0x50),
            (.pubrel(.init(packetIdentifier: 1)), 0x62),
            (.pubcomp(.init(packetIdentifier: 1)), 0x70),
            (.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init("a", qos: .atMostOnce)])), 0x82),
            (.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS0])), 0x90),
            (.unsubscribe(UnsubscribePacket(packetIdentifier: 1, topicFilters: ["a"])), 0xA2),
            (.unsuback(UnsubAckPacket(packetIdentifier: 1)), 0xB0),
            (.pingreq, 0xC0),
            (.pingresp, 0xD0),
            (.disconnect(DisconnectPacket()), 0xE0),
            (.auth(AuthPacket()), 0xF0),
        ]
        for (packet, firstByte) in expected {
            #expect(Wire.encode(packet, version: .v5).first == firstByte, "\(packet.type)")
        }
    }
}
