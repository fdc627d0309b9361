import MQTTCore
import NIOCore
import Testing

/// MQTT 5 properties (§2.2.2): wire format of all 27, where each may appear, repetition rules,
/// value ranges, and the typed accessors.
@Suite("Properties")
struct PropertiesTests {
    /// The places properties can appear, with the identifiers the specification allows there.
    enum Context: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case connect, will, connack, publish, puback, pubrec, pubrel, pubcomp
        case subscribe, suback, unsubscribe, unsuback, disconnect, auth

        var testDescription: String { rawValue.uppercased() }

        var allowed: [MQTTProperty.Identifier] {
            switch self {
            case .connect: return SamplePackets.connectProperties
            case .will: return SamplePackets.willProperties
            case .connack: return SamplePackets.connackProperties
            case .publish: return SamplePackets.publishProperties
            case .puback, .pubrec, .pubrel, .pubcomp, .suback, .unsuback: return SamplePackets.ackProperties
            case .subscribe: return SamplePackets.subscribeProperties
            case .unsubscribe: return SamplePackets.unsubscribeProperties
            case .disconnect: return SamplePackets.disconnectProperties
            case .auth: return SamplePackets.authProperties
            }
        }

        func packet(_ properties: MQTTProperties) -> MQTTPacket {
            switch self {
            case .connect:
                return .connect(ConnectPacket(clientIdentifier: "c", properties: properties))
            case .will:
                let will = ConnectPacket.Will(topic: "w", payload: ByteBuffer(string: "x"), properties: properties)
                return .connect(ConnectPacket(clientIdentifier: "c", will: will))
            case .connack:
                return .connack(ConnAckPacket(properties: properties))
            case .publish:
                return .publish(PublishPacket(topic: "t", payload: ByteBuffer(string: "p"), properties: properties))
            case .puback: return .puback(PublishAckPacket(packetIdentifier: 1, properties: properties))
            case .pubrec: return .pubrec(PublishAckPacket(packetIdentifier: 1, properties: properties))
            case .pubrel: return .pubrel(PublishAckPacket(packetIdentifier: 1, properties: properties))
            case .pubcomp: return .pubcomp(PublishAckPacket(packetIdentifier: 1, properties: properties))
            case .subscribe:
                return .subscribe(
                    SubscribePacket(
                        packetIdentifier: 1,
                        subscriptions: [.init("a", qos: .atMostOnce)],
                        properties: properties
                    )
                )
            case .suback:
                return .suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS0], properties: properties))
            case .unsubscribe:
                return .unsubscribe(UnsubscribePacket(packetIdentifier: 1, topicFilters: ["a"], properties: properties))
            case .unsuback:
                return .unsuback(UnsubAckPacket(packetIdentifier: 1, reasonCodes: [.success], properties: properties))
            case .disconnect:
                return .disconnect(DisconnectPacket(properties: properties))
            case .auth:
                return .auth(AuthPacket(reasonCode: .continueAuthentication, properties: properties))
            }
        }
    }

    /// Decodes `context`'s packet carrying `properties`, as an MQTT 5 peer would receive it.
    static func decode(_ context: Context, _ properties: MQTTProperties) throws(MQTTError) -> MQTTPacket? {
        try Wire.decode(Wire.encode(context.packet(properties), version: .v5), version: .v5).packet
    }

    // MARK: wire format

    struct Encoding: Sendable, CustomTestStringConvertible {
        var property: MQTTProperty
        var bytes: [UInt8]
        var testDescription: String { "\(property.identifier)" }
    }

    /// Each property's bytes as the table in MQTT 5 §2.2.2.2 defines them: identifier, then value.
    static let encodings: [Encoding] = [
        Encoding(property: .payloadFormatIndicator(1), bytes: [0x01, 0x01]),
        Encoding(property: .messageExpiryInterval(3600), bytes: [0x02, 0x00, 0x00, 0x0E, 0x10]),
        Encoding(property: .contentType("application/json"), bytes: [0x03] + Wire.str("application/json")),
        Encoding(property: .responseTopic("replies/device-1"), bytes: [0x08] + Wire.str("replies/device-1")),
        Encoding(
            property: .correlationData(ByteBuffer(bytes: [0x00, 0xFF, 0x10])),
            bytes: [0x09, 0x00, 0x03, 0x00, 0xFF, 0x10]
        ),
        Encoding(property: .subscriptionIdentifier(268_435_455), bytes: [0x0B, 0xFF, 0xFF, 0xFF, 0x7F]),
        Encoding(property: .sessionExpiryInterval(0xFFFF_FFFF), bytes: [0x11, 0xFF, 0xFF, 0xFF, 0xFF]),
        Encoding(property: .assignedClientIdentifier("auto-7f3a"), bytes: [0x12] + Wire.str("auto-7f3a")),
        Encoding(property: .serverKeepAlive(120), bytes: [0x13, 0x00, 0x78]),
        Encoding(property: .authenticationMethod("SCRAM-SHA-256"), bytes: [0x15] + Wire.str("SCRAM-SHA-256")),
        Encoding(
            property: .authenticationData(ByteBuffer(bytes: [1, 2, 3, 4])),
            bytes: [0x16, 0x00, 0x04, 1, 2, 3, 4]
        ),
        Encoding(property: .requestProblemInformation(0), bytes: [0x17, 0x00]),
        Encoding(property: .willDelayInterval(30), bytes: [0x18, 0x00, 0x00, 0x00, 0x1E]),
        Encoding(property: .requestResponseInformation(1), bytes: [0x19, 0x01]),
        Encoding(property: .responseInformation("responses/"), bytes: [0x1A] + Wire.str("responses/")),
        Encoding(
            property: .serverReference("backup.example.com:1883"),
            bytes: [0x1C] + Wire.str("backup.example.com:1883")
        ),
        Encoding(property: .reasonString("not today"), bytes: [0x1F] + Wire.str("not today")),
        Encoding(property: .receiveMaximum(65_535), bytes: [0x21, 0xFF, 0xFF]),
        Encoding(property: .topicAliasMaximum(16), bytes: [0x22, 0x00, 0x10]),
        Encoding(property: .topicAlias(3), bytes: [0x23, 0x00, 0x03]),
        Encoding(property: .maximumQoS(1), bytes: [0x24, 0x01]),
        Encoding(property: .retainAvailable(0), bytes: [0x25, 0x00]),
        Encoding(
            property: .userProperty("région", "東京"),
            bytes: [
                0x26, 0x00, 0x07, 0x72, 0xC3, 0xA9, 0x67, 0x69, 0x6F, 0x6E, 0x00, 0x06, 0xE6, 0x9D, 0xB1, 0xE4, 0xBA,
                0xAC,
            ]
        ),
        Encoding(property: .maximumPacketSize(1_048_576), bytes: [0x27, 0x00, 0x10, 0x00, 0x00]),
        Encoding(property: .wildcardSubscriptionAvailable(1), bytes: [0x28, 0x01]),
        Encoding(property: .subscriptionIdentifierAvailable(0), bytes: [0x29, 0x00]),
        Encoding(property: .sharedSubscriptionAvailable(1), bytes: [0x2A, 0x01]),
    ]

    @Test("the table covers all 27 properties and matches the samples")
    func tableCoversAll() {
        #expect(MQTTProperty.Identifier.allCases.count == 27)
        #expect(Set(Self.encodings.map(\.property.identifier)) == Set(MQTTProperty.Identifier.allCases))
        for encoding in Self.encodings {
            #expect(SampleProperty.value(encoding.property.identifier) == encoding.property)
        }
    }

    @Test("encodes", arguments: encodings)
    func encode(_ encoding: Encoding) {
        let properties: MQTTProperties = [encoding.property]
        var buffer = ByteBuffer()
        properties.write(to: &buffer)
        #expect(Array(buffer.readableBytesView) == Wire.props(encoding.bytes))
        #expect(properties.contentSize == encoding.bytes.count)
        #expect(properties.encodedSize == buffer.readableBytes)
    }

    @Test("decodes", arguments: encodings)
    func decode(_ encoding: Encoding) throws {
        let context = try #require(Context.allCases.first { $0.allowed.contains(encoding.property.identifier) })
        let set = Self.propertySet(context)
        var buffer = ByteBuffer(bytes: Wire.props(encoding.bytes) + [0xEE])
        let properties = try MQTTProperties.read(from: &buffer, allowed: set)
        #expect(Array(properties) == [encoding.property])
        #expect(buffer.readableBytes == 1, "reads exactly the properties block")
    }

    @Test("an empty block is one zero byte")
    func empty() throws {
        var buffer = ByteBuffer()
        MQTTProperties().write(to: &buffer)
        #expect(Array(buffer.readableBytesView) == [0x00])
        #expect(MQTTProperties().encodedSize == 1)
        #expect(try MQTTProperties.read(from: &buffer, allowed: .publish).isEmpty)
    }

    @Test("a block longer than 127 bytes has a two-byte length")
    func longBlock() throws {
        let properties: MQTTProperties = [.reasonString(String(repeating: "r", count: 200))]
        var buffer = ByteBuffer()
        properties.write(to: &buffer)
        #expect(Array(buffer.readableBytesView.prefix(2)) == Wire.vbi(203))
        #expect(properties.encodedSize == 205)
        #expect(try MQTTProperties.read(from: &buffer, allowed: .suback) == properties)
    }

    static func propertySet(_ context: Context) -> PropertySet {
        switch context {
        case .connect: return .connect
        case .will: return .will
        case .connack: return .connack
        case .publish: return .publish
        case .puback, .pubrec, .pubrel, .pubcomp: return .publishAck
        case .subscribe: return .subscribe
        case .suback: return .suback
        case .unsubscribe: return .unsubscribe
        case .unsuback: return .unsuback
        case .disconnect: return .disconnect
        case .auth: return .auth
        }
    }

    // MARK: where properties may appear

    @Test(
        "allowed only where the specification allows it",
        arguments: Context.allCases,
        MQTTProperty.Identifier.allCases
    )
    func allowedWhere(_ context: Context, _ identifier: MQTTProperty.Identifier) throws {
        let property = SampleProperty.value(identifier)
        if context.allowed.contains(identifier) {
            let packet = try Self.decode(context, [property])
            #expect(packet == context.packet([property]))
        } else {
            let error = #expect(throws: MQTTError.self) { _ = try Self.decode(context, [property]) }
            #expect(error?.code == .protocolError, "\(identifier) in \(context)")
            #expect(error?.reasonCode == .protocolError)
        }
    }

    @Test("every allowed property at once, user properties repeated", arguments: Context.allCases)
    func allAtOnce(_ context: Context) throws {
        let properties = SampleProperty.all(context.allowed)
        #expect(try Self.decode(context, properties) == context.packet(properties))
    }

    @Test("only user properties (and subscription identifiers in PUBLISH) may repeat", arguments: Context.allCases)
    func repetition(_ context: Context) throws {
        for identifier in context.allowed {
            let property = SampleProperty.value(identifier)
            let repeatable =
                identifier == .userProperty || (identifier == .subscriptionIdentifier && context == .publish)
            if repeatable {
                #expect(try Self.decode(context, [property, property]) == context.packet([property, property]))
            } else {
                let error = #expect(throws: MQTTError.self) { _ = try Self.decode(context, [property, property]) }
                #expect(error?.code == .protocolError, "duplicate \(identifier) in \(context)")
            }
        }
    }

    @Test("duplicates are found even when not adjacent")
    func nonAdjacentDuplicate() {
        let properties: MQTTProperties = [
            .messageExpiryInterval(1), .userProperty("a", "b"), .contentType("c"), .messageExpiryInterval(1),
        ]
        let error = #expect(throws: MQTTError.self) { _ = try Self.decode(.publish, properties) }
        #expect(error?.code == .protocolError)
    }

    // MARK: value ranges

    struct BadValue: Sendable, CustomTestStringConvertible {
        var property: MQTTProperty
        var context: Context
        var testDescription: String { "\(property) in \(context)" }
    }

    /// Values MQTT 5 §3 calls a protocol error.
    static let badValues: [BadValue] = [
        BadValue(property: .payloadFormatIndicator(2), context: .publish),
        BadValue(property: .payloadFormatIndicator(0xFF), context: .will),
        BadValue(property: .requestProblemInformation(2), context: .connect),
        BadValue(property: .requestResponseInformation(2), context: .connect),
        BadValue(property: .receiveMaximum(0), context: .connect),
        BadValue(property: .receiveMaximum(0), context: .connack),
        BadValue(property: .maximumPacketSize(0), context: .connect),
        BadValue(property: .maximumPacketSize(0), context: .connack),
        BadValue(property: .topicAlias(0), context: .publish),
        BadValue(property: .subscriptionIdentifier(0), context: .publish),
        BadValue(property: .subscriptionIdentifier(0), context: .subscribe),
        BadValue(property: .maximumQoS(2), context: .connack),
        BadValue(property: .retainAvailable(2), context: .connack),
        BadValue(property: .wildcardSubscriptionAvailable(2), context: .connack),
        BadValue(property: .subscriptionIdentifierAvailable(2), context: .connack),
        BadValue(property: .sharedSubscriptionAvailable(2), context: .connack),
    ]

    @Test("out-of-range values are protocol errors", arguments: badValues)
    func badValue(_ bad: BadValue) {
        let error = #expect(throws: MQTTError.self) { _ = try Self.decode(bad.context, [bad.property]) }
        #expect(error?.code == .protocolError)
    }

    @Test("boundary values are accepted")
    func boundaryValues() throws {
        let publish: MQTTProperties = [
            .topicAlias(1), .subscriptionIdentifier(1), .subscriptionIdentifier(268_435_455),
            .messageExpiryInterval(0), .payloadFormatIndicator(0), .correlationData(ByteBuffer()), .contentType(""),
            .userProperty("", ""),
        ]
        #expect(try Self.decode(.publish, publish) == Context.publish.packet(publish))
        let connect: MQTTProperties = [
            .receiveMaximum(1), .maximumPacketSize(1), .topicAliasMaximum(0), .sessionExpiryInterval(0),
            .requestProblemInformation(1), .requestResponseInformation(0),
        ]
        #expect(try Self.decode(.connect, connect) == Context.connect.packet(connect))
        let connack: MQTTProperties = [
            .maximumQoS(0), .retainAvailable(1), .wildcardSubscriptionAvailable(0),
            .subscriptionIdentifierAvailable(1), .sharedSubscriptionAvailable(0), .serverKeepAlive(0),
        ]
        #expect(try Self.decode(.connack, connack) == Context.connack.packet(connack))
    }

    @Test("a PUBLISH whose payload is marked UTF-8 is decoded without judging the payload")
    func publishPayloadFormat() throws {
        // MQTT 5 §3.3.2.3.2: the receiver MAY validate the payload; the codec leaves it to the broker.
        let packet = MQTTPacket.publish(
            PublishPacket(topic: "t", payload: ByteBuffer(bytes: [0xFF]), properties: [.payloadFormatIndicator(1)])
        )
        #expect(try Wire.decodeExactly(Wire.encode(packet, version: .v5), version: .v5) == packet)
        #expect(!mqttIsValidUTF8(ByteBuffer(bytes: [0xFF])))
        #expect(mqttIsValidUTF8(ByteBuffer(string: "température 21°C")))
        #expect(mqttIsValidUTF8(ByteBuffer()))
    }

    // MARK: typed accessors

    @Test("typed accessors read, replace and remove")
    func accessors() {
        var properties = MQTTProperties()
        #expect(properties.isEmpty)
        #expect(properties.messageExpiryInterval == nil)

        properties.messageExpiryInterval = 10
        properties.contentType = "text/plain"
        properties.messageExpiryInterval = 20
        #expect(properties.messageExpiryInterval == 20)
        #expect(properties.count == 2, "setting again replaces instead of appending")

        properties.contentType = nil
        #expect(properties.contentType == nil)
        #expect(Array(properties) == [.messageExpiryInterval(20)])

        properties.userProperties = [(key: "k", value: "1"), (key: "k", value: "2")]
        properties.append(.userProperty("j", "3"))
        #expect(properties.userProperties.map(\.key) == ["k", "k", "j"])
        #expect(properties.userProperties.map(\.value) == ["1", "2", "3"])

        properties.subscriptionIdentifiers = [3, 1, 2]
        #expect(properties.subscriptionIdentifiers == [3, 1, 2])
        properties.subscriptionIdentifiers = []
        #expect(properties.subscriptionIdentifiers.isEmpty)

        properties.remove(.userProperty)
        #expect(properties.userProperties.isEmpty)
        properties.set(.messageExpiryInterval(1))
        #expect(Array(properties) == [.messageExpiryInterval(1)])
    }

    @Test("every typed accessor round-trips its property")
    func everyAccessor() {
        var p = MQTTProperties()
        p.payloadFormatIndicator = 1
        p.messageExpiryInterval = 2
        p.contentType = "c"
        p.responseTopic = "r"
        p.correlationData = ByteBuffer(bytes: [9])
        p.sessionExpiryInterval = 3
        p.assignedClientIdentifier = "a"
        p.serverKeepAlive = 4
        p.authenticationMethod = "m"
        p.authenticationData = ByteBuffer(bytes: [8])
        p.requestProblemInformation = 0
        p.willDelayInterval = 5
        p.requestResponseInformation = 1
        p.responseInformation = "ri"
        p.serverReference = "s"
        p.reasonString = "why"
        p.receiveMaximum = 6
        p.topicAliasMaximum = 7
        p.topicAlias = 8
        p.maximumQoS = 1
        p.retainAvailable = 0
        p.maximumPacketSize = 9
        p.wildcardSubscriptionAvailable = 1
        p.subscriptionIdentifierAvailable = 0
        p.sharedSubscriptionAvailable = 1
        p.subscriptionIdentifiers = [10]
        p.userProperties = [(key: "k", value: "v")]
        #expect(Set(p.map(\.identifier)) == Set(MQTTProperty.Identifier.allCases))
        #expect(p.count == 27)
        #expect(p.payloadFormatIndicator == 1)
        #expect(p.messageExpiryInterval == 2)
        #expect(p.contentType == "c")
        #expect(p.responseTopic == "r")
        #expect(p.correlationData == ByteBuffer(bytes: [9]))
        #expect(p.sessionExpiryInterval == 3)
        #expect(p.assignedClientIdentifier == "a")
        #expect(p.serverKeepAlive == 4)
        #expect(p.authenticationMethod == "m")
        #expect(p.authenticationData == ByteBuffer(bytes: [8]))
        #expect(p.requestProblemInformation == 0)
        #expect(p.willDelayInterval == 5)
        #expect(p.requestResponseInformation == 1)
        #expect(p.responseInformation == "ri")
        #expect(p.serverReference == "s")
        #expect(p.reasonString == "why")
        #expect(p.receiveMaximum == 6)
        #expect(p.topicAliasMaximum == 7)
        #expect(p.topicAlias == 8)
        #expect(p.maximumQoS == 1)
        #expect(p.retainAvailable == 0)
        #expect(p.maximumPacketSize == 9)
        #expect(p.wildcardSubscriptionAvailable == 1)
        #expect(p.subscriptionIdentifierAvailable == 0)
        #expect(p.sharedSubscriptionAvailable == 1)
        #expect(p.subscriptionIdentifiers == [10])
        #expect(p.userProperties.count == 1)
    }
}
