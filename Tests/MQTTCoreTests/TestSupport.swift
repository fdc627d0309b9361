import MQTTCore
import NIOCore
import Testing

/// Shared helpers for the MQTTCore tests: encoding to byte arrays, decoding one packet, building
/// frames by hand, a seeded random generator and sample values for every property.
enum Wire {
    /// The decoder's default maximum: the largest packet MQTT can express.
    static let unlimited = 268_435_460

    /// Encodes `packet` for `version` into a byte array.
    static func encode(_ packet: MQTTPacket, version: MQTTProtocolVersion) -> [UInt8] {
        var buffer = ByteBuffer()
        packet.write(to: &buffer, version: version)
        return Array(buffer.readableBytesView)
    }

    /// Decodes one packet from `bytes` with a fresh decoder; `nil` when more bytes are needed.
    /// Also reports how many bytes were left unread.
    static func decode(
        _ bytes: [UInt8],
        version: MQTTProtocolVersion?,
        maximumPacketSize: Int = unlimited
    ) throws(MQTTError) -> (packet: MQTTPacket?, leftover: Int) {
        var decoder = MQTTPacketDecoder(maximumPacketSize: maximumPacketSize, protocolVersion: version)
        var buffer = ByteBuffer(bytes: bytes)
        let packet = try decoder.decodePacket(buffer: &buffer)
        return (packet, buffer.readableBytes)
    }

    /// Decodes `bytes`, which must hold exactly one whole packet.
    static func decodeExactly(
        _ bytes: [UInt8],
        version: MQTTProtocolVersion?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> MQTTPacket {
        let result = try decode(bytes, version: version)
        #expect(result.leftover == 0, "decoder left bytes unread", sourceLocation: sourceLocation)
        return try #require(result.packet, "decoder asked for more bytes", sourceLocation: sourceLocation)
    }

    /// The error decoding `bytes` throws, or `nil` (after recording an issue) if it does not throw.
    static func decodeError(
        _ bytes: [UInt8],
        version: MQTTProtocolVersion?,
        maximumPacketSize: Int = unlimited,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> MQTTError? {
        do throws(MQTTError) {
            let result = try decode(bytes, version: version, maximumPacketSize: maximumPacketSize)
            Issue.record(
                "expected an error, decoded \(String(describing: result.packet))",
                sourceLocation: sourceLocation
            )
            return nil
        } catch {
            return error
        }
    }

    // MARK: building frames by hand

    /// A frame: the first byte, the remaining length as a variable byte integer, and `body`.
    static func frame(_ firstByte: UInt8, _ body: [UInt8]) -> [UInt8] {
        [firstByte] + vbi(body.count) + body
    }

    /// A variable byte integer.
    static func vbi(_ value: Int) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value > 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value > 0
        return bytes
    }

    /// A two-byte big-endian integer.
    static func u16(_ value: Int) -> [UInt8] {
        [UInt8(value >> 8), UInt8(value & 0xFF)]
    }

    /// A length-prefixed string from its UTF-8 text.
    static func str(_ text: String) -> [UInt8] {
        u16(text.utf8.count) + Array(text.utf8)
    }

    /// A length-prefixed string from raw (possibly invalid) bytes.
    static func raw(_ bytes: [UInt8]) -> [UInt8] {
        u16(bytes.count) + bytes
    }

    /// A properties block: the length prefix and the given property bytes.
    static func props(_ bytes: [UInt8]) -> [UInt8] {
        vbi(bytes.count) + bytes
    }

    /// The body of a CONNECT up to and including the keep alive (and the properties for level 5).
    static func connectHeader(
        name: String = "MQTT",
        level: UInt8 = 4,
        flags: UInt8 = 0x02,
        keepAlive: Int = 60,
        properties: [UInt8]? = nil
    ) -> [UInt8] {
        var bytes = str(name) + [level, flags] + u16(keepAlive)
        if let properties { bytes += props(properties) } else if level == 5 { bytes += [0] }
        return bytes
    }
}

extension ByteBuffer {
    /// A buffer holding `count` bytes following a simple pattern.
    static func pattern(count: Int, seed: UInt8 = 0) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes in
            for index in 0..<count {
                bytes[index] = UInt8(truncatingIfNeeded: index &* 31) &+ seed
            }
            return count
        }
        return buffer
    }
}

/// SplitMix64: a small, fast, seedable generator so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` random bytes, eight per call to `next()`.
    mutating func bytes(_ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            var word = next()
            for _ in 0..<min(8, count - bytes.count) {
                bytes.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return bytes
    }
}

/// One example value for each of the 27 MQTT 5 properties.
enum SampleProperty {
    static func value(_ identifier: MQTTProperty.Identifier) -> MQTTProperty {
        switch identifier {
        case .payloadFormatIndicator: return .payloadFormatIndicator(1)
        case .messageExpiryInterval: return .messageExpiryInterval(3600)
        case .contentType: return .contentType("application/json")
        case .responseTopic: return .responseTopic("replies/device-1")
        case .correlationData: return .correlationData(ByteBuffer(bytes: [0x00, 0xFF, 0x10]))
        case .subscriptionIdentifier: return .subscriptionIdentifier(268_435_455)
        case .sessionExpiryInterval: return .sessionExpiryInterval(0xFFFF_FFFF)
        case .assignedClientIdentifier: return .assignedClientIdentifier("auto-7f3a")
        case .serverKeepAlive: return .serverKeepAlive(120)
        case .authenticationMethod: return .authenticationMethod("SCRAM-SHA-256")
        case .authenticationData: return .authenticationData(ByteBuffer(bytes: [1, 2, 3, 4]))
        case .requestProblemInformation: return .requestProblemInformation(0)
        case .willDelayInterval: return .willDelayInterval(30)
        case .requestResponseInformation: return .requestResponseInformation(1)
        case .responseInformation: return .responseInformation("responses/")
        case .serverReference: return .serverReference("backup.example.com:1883")
        case .reasonString: return .reasonString("not today")
        case .receiveMaximum: return .receiveMaximum(65_535)
        case .topicAliasMaximum: return .topicAliasMaximum(16)
        case .topicAlias: return .topicAlias(3)
        case .maximumQoS: return .maximumQoS(1)
        case .retainAvailable: return .retainAvailable(0)
        case .userProperty: return .userProperty("région", "東京")
        case .maximumPacketSize: return .maximumPacketSize(1_048_576)
        case .wildcardSubscriptionAvailable: return .wildcardSubscriptionAvailable(1)
        case .subscriptionIdentifierAvailable: return .subscriptionIdentifierAvailable(0)
        case .sharedSubscriptionAvailable: return .sharedSubscriptionAvailable(1)
        }
    }

    /// Every property a packet context may carry, with the repeatable ones repeated.
    static func all(_ identifiers: [MQTTProperty.Identifier]) -> MQTTProperties {
        var properties = MQTTProperties()
        for identifier in identifiers {
            switch identifier {
            case .userProperty:
                properties.append(.userProperty("k", "v1"))
                properties.append(.userProperty("k", "v2"))
                properties.append(value(.userProperty))
                properties.append(.userProperty("", ""))
            default:
                properties.append(value(identifier))
            }
        }
        return properties
    }
}
