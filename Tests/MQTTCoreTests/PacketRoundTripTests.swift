import MQTTCore
import NIOCore
import Testing

/// Encode → decode → encode for every packet type, MQTT 3.1, 3.1.1 and 5.0.
@Suite("Packet round trips")
struct PacketRoundTripTests {
    @Test("round trip", arguments: SamplePackets.all)
    func roundTrip(_ sample: VersionedPacket) throws {
        let bytes = Wire.encode(sample.packet, version: sample.version)
        #expect(sample.packet.encodedSize(version: sample.version) == bytes.count)
        #expect(bytes.first.map { $0 >> 4 } == sample.packet.type.rawValue)

        let decoded = try Wire.decodeExactly(bytes, version: sample.version)
        #expect(decoded == sample.packet)
        #expect(Wire.encode(decoded, version: sample.version) == bytes)
    }

    @Test("a server decoder learns the version from CONNECT", arguments: [MQTTProtocolVersion.v3_1, .v3_1_1, .v5])
    func learnsVersion(_ version: MQTTProtocolVersion) throws {
        let connect = MQTTPacket.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "c"))
        let publish = MQTTPacket.publish(
            PublishPacket(
                topic: "t",
                payload: ByteBuffer(string: "p"),
                qos: .atLeastOnce,
                packetIdentifier: 1,
                properties: version == .v5 ? [.messageExpiryInterval(9), .userProperty("a", "b")] : []
            )
        )
        var buffer = ByteBuffer(bytes: Wire.encode(connect, version: version) + Wire.encode(publish, version: version))
        var decoder = MQTTPacketDecoder()
        #expect(decoder.protocolVersion == nil)
        #expect(try decoder.decodePacket(buffer: &buffer) == connect)
        #expect(decoder.protocolVersion == version)
        #expect(try decoder.decodePacket(buffer: &buffer) == publish)
        #expect(try decoder.decodePacket(buffer: &buffer) == nil)
        #expect(buffer.readableBytes == 0)
    }

    @Test("a decoder told its version keeps it when a CONNECT of another version arrives")
    func keepsConfiguredVersion() throws {
        var decoder = MQTTPacketDecoder(protocolVersion: .v5)
        var buffer = ByteBuffer(
            bytes: Wire.encode(
                .connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c")),
                version: .v3_1_1
            )
        )
        _ = try decoder.decodePacket(buffer: &buffer)
        #expect(decoder.protocolVersion == .v5)
    }

    @Test("every packet type is covered for 3.1.1 and 5.0")
    func coverage() {
        for (version, samples) in [(MQTTProtocolVersion.v3_1_1, SamplePackets.v311), (.v5, SamplePackets.v5)] {
            let types = Set(samples.map(\.packet.type))
            let expected = Set(MQTTPacketType.allCases.filter { version == .v5 || $0 != .auth })
            #expect(types == expected, "MQTT \(version) samples miss \(expected.subtracting(types))")
        }
        let identifiers = Set(
            SamplePackets.v5.flatMap { sample -> [MQTTProperty.Identifier] in
                var all = Array(sample.packet.properties)
                if case .connect(let connect) = sample.packet, let will = connect.will {
                    all += Array(will.properties)
                }
                return all.map(\.identifier)
            }
        )
        #expect(identifiers == Set(MQTTProperty.Identifier.allCases))
    }

    @Test("MQTT 3.1.1 encoding drops what 3.1.1 cannot carry")
    func v311DropsV5Fields() throws {
        let publish = PublishPacket(
            topic: "t",
            payload: ByteBuffer(string: "p"),
            qos: .atLeastOnce,
            packetIdentifier: 3,
            properties: [.contentType("text/plain"), .userProperty("a", "b")]
        )
        var expected = publish
        expected.properties = []
        #expect(
            try Wire.decodeExactly(Wire.encode(.publish(publish), version: .v3_1_1), version: .v3_1_1)
                == .publish(expected)
        )

        let options = SubscriptionOptions(
            qos: .atLeastOnce,
            noLocal: true,
            retainAsPublished: true,
            retainHandling: .doNotSend
        )
        let subscribe = MQTTPacket.subscribe(
            SubscribePacket(
                packetIdentifier: 1,
                subscriptions: [.init(topicFilter: "a", options: options)],
                properties: [.subscriptionIdentifier(4)]
            )
        )
        #expect(Wire.encode(subscribe, version: .v3_1_1) == [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x01])

        // Every SUBACK failure becomes 0x80 in 3.1.1.
        let suback = MQTTPacket.suback(
            SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1, .topicFilterInvalid, .notAuthorized])
        )
        #expect(Wire.encode(suback, version: .v3_1_1) == [0x90, 0x05, 0x00, 0x01, 0x01, 0x80, 0x80])

        // CONNACK carries the nearest 3.1.1 return code.
        let connackCodes: [(ReasonCode, UInt8)] = [
            (.success, 0), (.unsupportedProtocolVersion, 1), (.clientIdentifierNotValid, 2), (.serverBusy, 3),
            (.badUserNameOrPassword, 4), (.notAuthorized, 5), (.banned, 5), (.badAuthenticationMethod, 5),
        ]
        for (code, returnCode) in connackCodes {
            let connack = MQTTPacket.connack(ConnAckPacket(reasonCode: code, properties: [.reasonString("r")]))
            #expect(Wire.encode(connack, version: .v3_1_1) == [0x20, 0x02, 0x00, returnCode], "\(code)")
        }

        // Acknowledgements, UNSUBACK and DISCONNECT lose their reason codes and properties.
        let puback = MQTTPacket.puback(
            PublishAckPacket(packetIdentifier: 9, reasonCode: .quotaExceeded, properties: [.reasonString("r")])
        )
        #expect(Wire.encode(puback, version: .v3_1_1) == [0x40, 0x02, 0x00, 0x09])
        let unsuback = MQTTPacket.unsuback(UnsubAckPacket(packetIdentifier: 9, reasonCodes: [.success]))
        #expect(Wire.encode(unsuback, version: .v3_1_1) == [0xB0, 0x02, 0x00, 0x09])
        let disconnect = MQTTPacket.disconnect(DisconnectPacket(reasonCode: .serverShuttingDown))
        #expect(Wire.encode(disconnect, version: .v3_1_1) == [0xE0, 0x00])
    }

    @Test("encodedSize matches the bytes written around remaining-length boundaries")
    func encodedSizeAtBoundaries() throws {
        // Topic "t" (3 bytes) + packet id (2) + payload: choose payloads that put the remaining
        // length on each side of the 1/2/3-byte variable byte integer boundaries.
        for remaining in [127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let packet = MQTTPacket.publish(
                PublishPacket(
                    topic: "t",
                    payload: .pattern(count: remaining - 5),
                    qos: .atLeastOnce,
                    packetIdentifier: 1
                )
            )
            let bytes = Wire.encode(packet, version: .v3_1_1)
            #expect(bytes.count == packet.encodedSize(version: .v3_1_1))
            #expect(bytes.count == 1 + Wire.vbi(remaining).count + remaining)
            #expect(try Wire.decodeExactly(bytes, version: .v3_1_1) == packet)
        }
    }
}

extension MQTTPacket {
    /// The packet's own properties (not the will's), for coverage checks.
    fileprivate var properties: MQTTProperties {
        switch self {
        case .connect(let p): return p.properties
        case .connack(let p): return p.properties
        case .publish(let p): return p.properties
        case .puback(let p), .pubrec(let p), .pubrel(let p), .pubcomp(let p): return p.properties
        case .subscribe(let p): return p.properties
        case .suback(let p): return p.properties
        case .unsubscribe(let p): return p.properties
        case .unsuback(let p): return p.properties
        case .disconnect(let p): return p.properties
        case .auth(let p): return p.properties
        case .pingreq, .pingresp: return []
        }
    }
}
