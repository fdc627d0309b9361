import MQTTCore
import NIOCore
import NIOTestUtils
import Testing

/// The decoder in a channel pipeline, checked with NIO's `ByteToMessageDecoderVerifier`, which
/// feeds every input whole, byte by byte (with junk around each byte's slice) and all at once.
@Suite("Decoder in a pipeline")
struct DecoderVerifierTests {
    /// Input/output pairs: every sample alone, then groups of several packets in one input.
    static func pairs(_ samples: [VersionedPacket], groupSize: Int = 4) -> [(ByteBuffer, [MQTTPacket])] {
        var pairs = samples.map { sample in
            (ByteBuffer(bytes: Wire.encode(sample.packet, version: sample.version)), [sample.packet])
        }
        var start = 0
        while start < samples.count {
            let group = samples[start..<min(start + groupSize, samples.count)]
            var buffer = ByteBuffer()
            for sample in group {
                buffer.writeBytes(Wire.encode(sample.packet, version: sample.version))
            }
            pairs.append((buffer, group.map(\.packet)))
            start += groupSize
        }
        return pairs
    }

    @Test("MQTT 3.1.1 packets, alone and several per input")
    func v311() throws {
        let samples = SamplePackets.v311.filter { $0.packet.encodedSize(version: .v3_1_1) < 4096 }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: Self.pairs(samples),
            decoderFactory: { MQTTPacketDecoder(protocolVersion: .v3_1_1) }
        )
    }

    @Test("MQTT 5 packets, alone and several per input")
    func v5() throws {
        let samples = SamplePackets.v5.filter { $0.packet.encodedSize(version: .v5) < 4096 }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: Self.pairs(samples, groupSize: 5),
            decoderFactory: { MQTTPacketDecoder(maximumPacketSize: 64 * 1024, protocolVersion: .v5) }
        )
    }

    @Test("a server's decoder learns MQTT 5 from CONNECT, in every chunking")
    func learnsVersionInPipeline() throws {
        let session: [MQTTPacket] = [
            .connect(
                ConnectPacket(clientIdentifier: "dev", properties: [.receiveMaximum(10), .userProperty("a", "b")])
            ),
            .publish(
                PublishPacket(
                    topic: "devices/dev/telemetry",
                    payload: ByteBuffer(string: "{\"t\":21.5}"),
                    qos: .atLeastOnce,
                    packetIdentifier: 1,
                    properties: [.messageExpiryInterval(60), .contentType("application/json")]
                )
            ),
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 2,
                    subscriptions: [
                        .init(topicFilter: "devices/dev/commands/#", options: .init(qos: .exactlyOnce, noLocal: true))
                    ],
                    properties: [.subscriptionIdentifier(7)]
                )
            ),
            .puback(PublishAckPacket(packetIdentifier: 9, reasonCode: .noMatchingSubscribers)),
            .pingreq,
            .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)),
        ]
        var input = ByteBuffer()
        for packet in session { input.writeBytes(Wire.encode(packet, version: .v5)) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(input, session)],
            decoderFactory: { MQTTPacketDecoder() }
        )
    }

    @Test("MQTT 3.1 (MQIsdp) session")
    func v31Session() throws {
        let session: [MQTTPacket] =
            SamplePackets.v31.map(\.packet) + [
                .publish(
                    PublishPacket(
                        topic: "old",
                        payload: ByteBuffer(string: "x"),
                        qos: .exactlyOnce,
                        packetIdentifier: 3
                    )
                ),
                .pubrel(PublishAckPacket(packetIdentifier: 3)),
            ]
        var input = ByteBuffer()
        for packet in session { input.writeBytes(Wire.encode(packet, version: .v3_1)) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(input, session)],
            decoderFactory: { MQTTPacketDecoder() }
        )
    }

    @Test("a medium-sized PUBLISH split at every byte")
    func mediumPublish() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(topic: "bulk/data", payload: .pattern(count: 3_000), qos: .atLeastOnce, packetIdentifier: 8)
        )
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(ByteBuffer(bytes: Wire.encode(packet, version: .v5)), [packet])],
            decoderFactory: { MQTTPacketDecoder(maximumPacketSize: 64 * 1024, protocolVersion: .v5) }
        )
    }

    @Test("the pipeline encoder writes what MQTTPacket.write writes", arguments: SamplePackets.small)
    func encoder(_ sample: VersionedPacket) throws {
        let encoder = MQTTPacketEncoder(protocolVersion: sample.version)
        var buffer = ByteBuffer()
        try encoder.encode(data: sample.packet, out: &buffer)
        #expect(Array(buffer.readableBytesView) == Wire.encode(sample.packet, version: sample.version))
    }

    @Test("random chunkings of a long stream decode to the same packets")
    func randomChunking() throws {
        var rng = SeededGenerator(seed: 0xC4_0C4)
        let samples = SamplePackets.v5.filter { $0.packet.encodedSize(version: .v5) < 4096 }
        var stream: [UInt8] = []
        var expected: [MQTTPacket] = []
        for _ in 0..<500 {
            let sample = samples.randomElement(using: &rng)!
            stream += Wire.encode(sample.packet, version: .v5)
            expected.append(sample.packet)
        }
        var decoder = MQTTPacketDecoder(maximumPacketSize: 64 * 1024, protocolVersion: .v5)
        var buffer = ByteBuffer()
        var decoded: [MQTTPacket] = []
        var offset = 0
        while offset < stream.count {
            let chunk = Int.random(in: 1...300, using: &rng)
            buffer.writeBytes(stream[offset..<min(offset + chunk, stream.count)])
            offset += chunk
            while let packet = try decoder.decodePacket(buffer: &buffer) {
                decoded.append(packet)
            }
            buffer.discardReadBytes()
        }
        #expect(buffer.readableBytes == 0)
        #expect(decoded == expected)
    }
}
