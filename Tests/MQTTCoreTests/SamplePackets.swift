import MQTTCore
import NIOCore
import Testing

/// A packet and the protocol version to encode it with, for parameterised tests.
struct VersionedPacket: Sendable, CustomTestStringConvertible {
    var name: String
    var version: MQTTProtocolVersion
    var packet: MQTTPacket

    var testDescription: String { "\(name) (MQTT \(version))" }
}

/// Packets of every type that survive an encode/decode round trip unchanged.
enum SamplePackets {
    /// The properties each packet context allows (MQTT 5 §2.2.2.2).
    static let connectProperties: [MQTTProperty.Identifier] = [
        .sessionExpiryInterval, .authenticationMethod, .authenticationData, .requestProblemInformation,
        .requestResponseInformation, .receiveMaximum, .topicAliasMaximum, .userProperty, .maximumPacketSize,
    ]
    static let willProperties: [MQTTProperty.Identifier] = [
        .willDelayInterval, .payloadFormatIndicator, .messageExpiryInterval, .contentType, .responseTopic,
        .correlationData, .userProperty,
    ]
    static let connackProperties: [MQTTProperty.Identifier] = [
        .sessionExpiryInterval, .assignedClientIdentifier, .serverKeepAlive, .authenticationMethod,
        .authenticationData, .responseInformation, .serverReference, .reasonString, .receiveMaximum,
        .topicAliasMaximum, .maximumQoS, .retainAvailable, .userProperty, .maximumPacketSize,
        .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable,
    ]
    static let publishProperties: [MQTTProperty.Identifier] = [
        .payloadFormatIndicator, .messageExpiryInterval, .contentType, .responseTopic, .correlationData,
        .subscriptionIdentifier, .topicAlias, .userProperty,
    ]
    static let ackProperties: [MQTTProperty.Identifier] = [.reasonString, .userProperty]
    static let subscribeProperties: [MQTTProperty.Identifier] = [.subscriptionIdentifier, .userProperty]
    static let unsubscribeProperties: [MQTTProperty.Identifier] = [.userProperty]
    static let disconnectProperties: [MQTTProperty.Identifier] = [
        .sessionExpiryInterval, .reasonString, .userProperty, .serverReference,
    ]
    static let authProperties: [MQTTProperty.Identifier] = [
        .authenticationMethod, .authenticationData, .reasonString, .userProperty,
    ]

    static func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    /// Packets every version encodes without loss.
    static func common(version: MQTTProtocolVersion) -> [VersionedPacket] {
        func p(_ name: String, _ packet: MQTTPacket) -> VersionedPacket {
            VersionedPacket(name: name, version: version, packet: packet)
        }
        let level = version
        var packets: [VersionedPacket] = [
            p("CONNECT minimal", .connect(ConnectPacket(protocolVersion: level, clientIdentifier: "dev-1"))),
            p(
                "CONNECT empty client id, persistent session, keep alive 0",
                .connect(ConnectPacket(protocolVersion: level, clientIdentifier: "", cleanStart: false, keepAlive: 0))
            ),
            p(
                "CONNECT username only",
                .connect(ConnectPacket(protocolVersion: level, clientIdentifier: "dev-1", username: "alice"))
            ),
            p(
                "CONNECT username and password",
                .connect(
                    ConnectPacket(
                        protocolVersion: level,
                        clientIdentifier: "dev-1",
                        keepAlive: 65_535,
                        username: "alice",
                        password: ByteBuffer(bytes: [0x00, 0xFF, 0x70])
                    )
                )
            ),
            p(
                "CONNECT empty username and empty password",
                .connect(
                    ConnectPacket(
                        protocolVersion: level,
                        clientIdentifier: "dev-1",
                        username: "",
                        password: ByteBuffer()
                    )
                )
            ),
            p("CONNACK accepted", .connack(ConnAckPacket())),
            p("CONNACK session present", .connack(ConnAckPacket(sessionPresent: true))),
            p("CONNACK not authorized", .connack(ConnAckPacket(reasonCode: .notAuthorized))),
            p("CONNACK bad user name or password", .connack(ConnAckPacket(reasonCode: .badUserNameOrPassword))),
            p("CONNACK server unavailable", .connack(ConnAckPacket(reasonCode: .serverUnavailable))),
            p("CONNACK client id rejected", .connack(ConnAckPacket(reasonCode: .clientIdentifierNotValid))),
            p("CONNACK bad version", .connack(ConnAckPacket(reasonCode: .unsupportedProtocolVersion))),
            p("PUBLISH QoS 0", .publish(PublishPacket(topic: "devices/d1/telemetry", payload: bytes("{\"t\":1}")))),
            p("PUBLISH QoS 0 empty payload", .publish(PublishPacket(topic: "a", payload: ByteBuffer()))),
            p(
                "PUBLISH QoS 1 retained",
                .publish(
                    PublishPacket(
                        topic: "a/b",
                        payload: bytes("x"),
                        qos: .atLeastOnce,
                        retain: true,
                        packetIdentifier: 1
                    )
                )
            ),
            p(
                "PUBLISH QoS 2 DUP",
                .publish(
                    PublishPacket(
                        topic: "a/b/c",
                        payload: bytes("y"),
                        qos: .exactlyOnce,
                        dup: true,
                        packetIdentifier: 65_535
                    )
                )
            ),
            p(
                "PUBLISH QoS 1 DUP retained empty payload",
                .publish(
                    PublishPacket(
                        topic: "ü/€/𝄞",
                        payload: ByteBuffer(),
                        qos: .atLeastOnce,
                        retain: true,
                        dup: true,
                        packetIdentifier: 42
                    )
                )
            ),
            p(
                "PUBLISH 200 KiB payload",
                .publish(
                    PublishPacket(
                        topic: "bulk",
                        payload: .pattern(count: 200 * 1024),
                        qos: .atLeastOnce,
                        packetIdentifier: 7
                    )
                )
            ),
            p("PUBACK", .puback(PublishAckPacket(packetIdentifier: 1))),
            p("PUBREC", .pubrec(PublishAckPacket(packetIdentifier: 2))),
            p("PUBREL", .pubrel(PublishAckPacket(packetIdentifier: 3))),
            p("PUBCOMP", .pubcomp(PublishAckPacket(packetIdentifier: 65_535))),
            p(
                "SUBSCRIBE one filter",
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 9,
                        subscriptions: [.init("devices/+/telemetry", qos: .atLeastOnce)]
                    )
                )
            ),
            p(
                "SUBSCRIBE several filters",
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 10,
                        subscriptions: [
                            .init("#", qos: .atMostOnce), .init("a/+/b", qos: .exactlyOnce),
                            .init("$SYS/#", qos: .atLeastOnce),
                        ]
                    )
                )
            ),
            p(
                "SUBACK",
                .suback(
                    SubAckPacket(
                        packetIdentifier: 10,
                        reasonCodes: [.grantedQoS0, .grantedQoS2, .grantedQoS1, .unspecifiedError]
                    )
                )
            ),
            p("UNSUBSCRIBE", .unsubscribe(UnsubscribePacket(packetIdentifier: 11, topicFilters: ["a/#", "+", "x"]))),
            p("PINGREQ", .pingreq),
            p("PINGRESP", .pingresp),
            p("DISCONNECT", .disconnect(DisconnectPacket())),
        ]
        for qos in [QoS.atMostOnce, .atLeastOnce, .exactlyOnce] {
            for retain in [false, true] {
                let will = ConnectPacket.Will(
                    topic: "devices/d1/status",
                    payload: bytes("offline"),
                    qos: qos,
                    retain: retain
                )
                packets.append(
                    p(
                        "CONNECT will \(qos) retain \(retain)",
                        .connect(
                            ConnectPacket(
                                protocolVersion: level,
                                clientIdentifier: "dev-w",
                                username: "u",
                                password: bytes("p"),
                                will: will
                            )
                        )
                    )
                )
            }
        }
        packets.append(
            p(
                "CONNECT will with empty payload",
                .connect(
                    ConnectPacket(
                        protocolVersion: level,
                        clientIdentifier: "dev-w",
                        will: .init(topic: "w", payload: ByteBuffer())
                    )
                )
            )
        )
        if version != .v5 {
            packets.append(p("UNSUBACK", .unsuback(UnsubAckPacket(packetIdentifier: 11))))
        }
        return packets
    }

    /// MQTT 3.1.1 packets (the common set, plus 3.1.1-only details).
    static let v311: [VersionedPacket] = common(version: .v3_1_1)

    /// MQTT 3.1 (`MQIsdp`) CONNECT packets.
    static let v31: [VersionedPacket] = {
        let will = ConnectPacket.Will(topic: "old/will", payload: bytes("gone"), qos: .atLeastOnce, retain: true)
        return [
            VersionedPacket(
                name: "CONNECT MQIsdp minimal",
                version: .v3_1,
                packet: .connect(ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "legacy"))
            ),
            VersionedPacket(
                name: "CONNECT MQIsdp will, username, password",
                version: .v3_1,
                packet: .connect(
                    ConnectPacket(
                        protocolVersion: .v3_1,
                        clientIdentifier: "legacy",
                        cleanStart: false,
                        keepAlive: 10,
                        username: "old",
                        password: bytes("secret"),
                        will: will
                    )
                )
            ),
        ]
    }()

    /// MQTT 5 packets: the common set plus properties, reason codes and AUTH.
    static let v5: [VersionedPacket] = {
        func p(_ name: String, _ packet: MQTTPacket) -> VersionedPacket {
            VersionedPacket(name: name, version: .v5, packet: packet)
        }
        let allWill = ConnectPacket.Will(
            topic: "devices/d1/status",
            payload: bytes("{\"online\":false}"),
            qos: .exactlyOnce,
            retain: true,
            properties: SampleProperty.all(willProperties)
        )
        var publishAll = SampleProperty.all(publishProperties)
        publishAll.subscriptionIdentifiers = [1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455]
        var aliasOnly = MQTTProperties()
        aliasOnly.topicAlias = 65_535
        var ackAll = SampleProperty.all(Self.ackProperties)
        ackAll.reasonString = "quota"
        return common(version: .v5) + [
            p(
                "CONNECT all properties, will with all properties",
                .connect(
                    ConnectPacket(
                        clientIdentifier: "dev-1",
                        cleanStart: false,
                        keepAlive: 30,
                        username: "alice",
                        password: bytes("pw"),
                        will: allWill,
                        properties: SampleProperty.all(connectProperties)
                    )
                )
            ),
            p(
                "CONNECT password without username",
                .connect(ConnectPacket(clientIdentifier: "dev-1", password: bytes("token-only")))
            ),
            p(
                "CONNECT will QoS 1 with delay only",
                .connect(
                    ConnectPacket(
                        clientIdentifier: "d",
                        will: .init(
                            topic: "w",
                            payload: bytes("x"),
                            qos: .atLeastOnce,
                            properties: [.willDelayInterval(5)]
                        )
                    )
                )
            ),
            p(
                "CONNACK all properties",
                .connack(ConnAckPacket(sessionPresent: true, properties: SampleProperty.all(connackProperties)))
            ),
            p(
                "CONNACK failure reason",
                .connack(ConnAckPacket(reasonCode: .serverMoved, properties: [.serverReference("b")]))
            ),
            p("CONNACK banned", .connack(ConnAckPacket(reasonCode: .banned))),
            p(
                "PUBLISH all properties, several subscription identifiers",
                .publish(
                    PublishPacket(
                        topic: "a/b",
                        payload: bytes("hello"),
                        qos: .exactlyOnce,
                        retain: true,
                        packetIdentifier: 77,
                        properties: publishAll
                    )
                )
            ),
            p(
                "PUBLISH topic alias with empty topic",
                .publish(
                    PublishPacket(
                        topic: "",
                        payload: bytes("z"),
                        qos: .atLeastOnce,
                        packetIdentifier: 5,
                        properties: aliasOnly
                    )
                )
            ),
            p(
                "PUBLISH 200 KiB payload with properties",
                .publish(
                    PublishPacket(
                        topic: "bulk",
                        payload: .pattern(count: 200 * 1024, seed: 9),
                        properties: [.contentType("application/octet-stream"), .userProperty("part", "1")]
                    )
                )
            ),
            p("PUBACK reason only", .puback(PublishAckPacket(packetIdentifier: 1, reasonCode: .noMatchingSubscribers))),
            p(
                "PUBACK reason and properties",
                .puback(PublishAckPacket(packetIdentifier: 1, reasonCode: .quotaExceeded, properties: ackAll))
            ),
            p(
                "PUBACK success with properties",
                .puback(PublishAckPacket(packetIdentifier: 1, properties: [.userProperty("a", "b")]))
            ),
            p(
                "PUBREC reason and properties",
                .pubrec(PublishAckPacket(packetIdentifier: 2, reasonCode: .notAuthorized, properties: ackAll))
            ),
            p(
                "PUBREL reason only",
                .pubrel(PublishAckPacket(packetIdentifier: 3, reasonCode: .packetIdentifierNotFound))
            ),
            p("PUBREL properties", .pubrel(PublishAckPacket(packetIdentifier: 3, properties: ackAll))),
            p(
                "PUBCOMP reason and properties",
                .pubcomp(
                    PublishAckPacket(
                        packetIdentifier: 4,
                        reasonCode: .packetIdentifierNotFound,
                        properties: ackAll
                    )
                )
            ),
            p(
                "SUBSCRIBE options and properties",
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 12,
                        subscriptions: [
                            .init(
                                topicFilter: "a/#",
                                options: .init(
                                    qos: .exactlyOnce,
                                    noLocal: true,
                                    retainAsPublished: true,
                                    retainHandling: .doNotSend
                                )
                            ),
                            .init(
                                topicFilter: "$share/g/b/+",
                                options: .init(qos: .atLeastOnce, retainHandling: .sendIfNew)
                            ),
                            .init(topicFilter: "c", options: .init(retainAsPublished: true)),
                        ],
                        properties: SampleProperty.all(subscribeProperties)
                    )
                )
            ),
            p(
                "SUBACK properties and failures",
                .suback(
                    SubAckPacket(
                        packetIdentifier: 12,
                        reasonCodes: [.grantedQoS2, .topicFilterInvalid, .sharedSubscriptionsNotSupported],
                        properties: SampleProperty.all(ackProperties)
                    )
                )
            ),
            p(
                "UNSUBSCRIBE properties",
                .unsubscribe(
                    UnsubscribePacket(
                        packetIdentifier: 13,
                        topicFilters: ["a/#"],
                        properties: SampleProperty.all(unsubscribeProperties)
                    )
                )
            ),
            p(
                "UNSUBACK reason codes and properties",
                .unsuback(
                    UnsubAckPacket(
                        packetIdentifier: 13,
                        reasonCodes: [.success, .noSubscriptionExisted, .notAuthorized],
                        properties: SampleProperty.all(ackProperties)
                    )
                )
            ),
            p("UNSUBACK no reason codes", .unsuback(UnsubAckPacket(packetIdentifier: 13))),
            p("DISCONNECT reason only", .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage))),
            p(
                "DISCONNECT properties",
                .disconnect(
                    DisconnectPacket(reasonCode: .serverMoved, properties: SampleProperty.all(disconnectProperties))
                )
            ),
            p(
                "DISCONNECT normal with properties",
                .disconnect(DisconnectPacket(properties: [.sessionExpiryInterval(0)]))
            ),
            p("AUTH empty", .auth(AuthPacket())),
            p(
                "AUTH continue with properties",
                .auth(AuthPacket(reasonCode: .continueAuthentication, properties: SampleProperty.all(authProperties)))
            ),
            p("AUTH re-authenticate", .auth(AuthPacket(reasonCode: .reAuthenticate))),
            p("AUTH success with method", .auth(AuthPacket(properties: [.authenticationMethod("PLAIN")]))),
        ]
    }()

    /// Every sample, all versions.
    static let all: [VersionedPacket] = v31 + v311 + v5

    /// The samples small enough for fuzzing and chunked decoding.
    static let small: [VersionedPacket] = all.filter { $0.packet.encodedSize(version: $0.version) < 4096 }
}
