import MQTTCore
import NIOCore
import Testing

/// Malformed and rule-breaking input, each with the error code (and so the MQTT 5 reason code)
/// the decoder must report.
@Suite("Malformed packets")
struct MalformedPacketTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var version: MQTTProtocolVersion?
        var bytes: [UInt8]
        var code: MQTTError.Code
        var maximumPacketSize = Wire.unlimited

        init(
            _ name: String,
            _ version: MQTTProtocolVersion?,
            _ bytes: [UInt8],
            _ code: MQTTError.Code,
            maximum: Int = Wire.unlimited
        ) {
            self.name = name
            self.version = version
            self.bytes = bytes
            self.code = code
            self.maximumPacketSize = maximum
        }

        var testDescription: String { "\(name) (MQTT \(version.map { "\($0)" } ?? "unknown"))" }
    }

    /// The reason code each error code must map to (MQTT 5 §2.4), independent of the codec's table.
    static func expectedReasonCode(_ code: MQTTError.Code) -> UInt8 {
        switch code {
        case .malformedPacket: return 0x81
        case .protocolError: return 0x82
        case .unsupportedProtocolVersion: return 0x84
        case .topicFilterInvalid: return 0x8F
        case .topicNameInvalid: return 0x90
        case .packetTooLarge: return 0x95
        case .payloadFormatInvalid: return 0x99
        default: return 0
        }
    }

    static let malformed = MQTTError.Code.malformedPacket
    static let protocolError = MQTTError.Code.protocolError

    static func frame(_ firstByte: UInt8, _ body: [UInt8]) -> [UInt8] { Wire.frame(firstByte, body) }
    static func str(_ text: String) -> [UInt8] { Wire.str(text) }
    static func raw(_ bytes: [UInt8]) -> [UInt8] { Wire.raw(bytes) }
    static func props(_ bytes: [UInt8]) -> [UInt8] { Wire.props(bytes) }
    static let id1 = Wire.u16(1)

    /// A 3.1.1 CONNECT with the given flags and payload fields.
    static func connect(flags: UInt8, _ payload: [UInt8]) -> [UInt8] {
        frame(0x10, Wire.connectHeader(flags: flags) + payload)
    }

    /// A 5.0 CONNECT with the given flags, properties and payload fields.
    static func connect5(flags: UInt8 = 0x02, properties: [UInt8] = [], _ payload: [UInt8]) -> [UInt8] {
        frame(0x10, Wire.connectHeader(level: 5, flags: flags, properties: properties) + payload)
    }

    /// A 3.1.1 CONNECT whose client identifier is the given raw bytes.
    static func clientID(_ bytes: [UInt8]) -> [UInt8] { connect(flags: 0x02, raw(bytes)) }

    /// A 5.0 QoS 0 PUBLISH to "t" with the given property bytes.
    static func publish5(properties: [UInt8]) -> [UInt8] {
        frame(0x30, str("t") + props(properties) + [0x70])
    }

    static let fixedHeaderCases: [Case] = [
        Case("reserved packet type 0", .v3_1_1, [0x00, 0x00], malformed),
        Case("reserved packet type 0", .v5, [0x00, 0x00], malformed),
        Case("reserved packet type 0 with flags and body", .v5, [0x0F, 0x01, 0x00], malformed),
        Case("CONNECT flags 0010", nil, frame(0x12, Wire.connectHeader() + str("c")), malformed),
        Case("CONNACK flags 0001", .v3_1_1, frame(0x21, [0, 0]), malformed),
        Case("PUBACK flags 0010", .v3_1_1, frame(0x42, id1), malformed),
        Case("PUBREC flags 0001", .v5, frame(0x51, id1), malformed),
        Case("PUBREL flags 0000", .v3_1_1, frame(0x60, id1), malformed),
        Case("PUBREL flags 0011", .v5, frame(0x63, id1), malformed),
        Case("PUBCOMP flags 1000", .v5, frame(0x78, id1), malformed),
        Case("SUBSCRIBE flags 0000", .v3_1_1, frame(0x80, id1 + str("a") + [0]), malformed),
        Case("SUBSCRIBE flags 0011", .v3_1_1, frame(0x83, id1 + str("a") + [0]), malformed),
        Case("SUBSCRIBE flags 0000", .v5, frame(0x80, id1 + [0] + str("a") + [0]), malformed),
        Case("SUBACK flags 0010", .v3_1_1, frame(0x92, id1 + [0]), malformed),
        Case("UNSUBSCRIBE flags 0000", .v3_1_1, frame(0xA0, id1 + str("a")), malformed),
        Case("UNSUBSCRIBE flags 1010", .v5, frame(0xAA, id1 + [0] + str("a")), malformed),
        Case("UNSUBACK flags 0010", .v3_1_1, frame(0xB2, id1), malformed),
        Case("PINGREQ flags 0001", .v3_1_1, [0xC1, 0x00], malformed),
        Case("PINGRESP flags 1000", .v3_1_1, [0xD8, 0x00], malformed),
        Case("DISCONNECT flags 0001", .v5, [0xE1, 0x00], malformed),
        Case("AUTH flags 0010", .v5, [0xF2, 0x00], malformed),
        Case("remaining length of 5 bytes", .v3_1_1, [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], malformed),
        Case("remaining length of 5 bytes", .v5, [0x82, 0x80, 0x80, 0x80, 0x80, 0x01], malformed),
    ]

    static let publishCases: [Case] = [
        Case("PUBLISH QoS 3", .v3_1_1, frame(0x36, str("a") + id1), malformed),
        Case("PUBLISH QoS 3 with DUP and RETAIN", .v5, frame(0x3F, str("a") + id1 + [0]), malformed),
        Case("DUP on QoS 0", .v3_1_1, frame(0x38, str("a")), malformed),
        Case("DUP on QoS 0", .v5, frame(0x38, str("a") + [0]), malformed),
        Case("PUBLISH QoS 1 packet identifier 0", .v3_1_1, frame(0x32, str("a") + [0, 0]), malformed),
        Case("PUBLISH QoS 2 packet identifier 0", .v5, frame(0x34, str("a") + [0, 0, 0]), malformed),
        Case("PUBLISH QoS 1 packet identifier missing", .v3_1_1, frame(0x32, str("a")), malformed),
        Case("PUBLISH topic length beyond the packet", .v3_1_1, frame(0x30, [0xFF, 0xFF, 0x61]), malformed),
        Case("PUBLISH topic length cut short", .v3_1_1, frame(0x30, [0x00]), malformed),
        Case("PUBLISH empty body", .v3_1_1, [0x30, 0x00], malformed),
        Case("PUBLISH topic with +", .v3_1_1, frame(0x30, str("a/+/c") + [1]), .topicNameInvalid),
        Case("PUBLISH topic with #", .v3_1_1, frame(0x30, str("a/#")), .topicNameInvalid),
        Case("PUBLISH topic with #", .v5, frame(0x30, str("#") + [0]), .topicNameInvalid),
        Case("PUBLISH topic with + inside a level", .v5, frame(0x30, str("a+b") + [0]), .topicNameInvalid),
        Case("PUBLISH empty topic name", .v3_1_1, frame(0x30, str("") + [0x61]), .topicNameInvalid),
        // MQTT 5 §3.3.2.1: a zero-length topic without a topic alias is a protocol error.
        Case("PUBLISH empty topic without topic alias", .v5, frame(0x30, str("") + [0]), protocolError),
        Case("PUBLISH topic with U+0000", .v3_1_1, frame(0x30, raw([0x61, 0x00])), malformed),
        Case("PUBLISH topic with a surrogate", .v5, frame(0x30, raw([0x61, 0xED, 0xA0, 0x80]) + [0]), malformed),
        Case("PUBLISH properties missing", .v5, frame(0x30, str("t")), malformed),
        Case("PUBLISH property length beyond the packet", .v5, frame(0x30, str("t") + [0x05, 0x01]), malformed),
        Case(
            "PUBLISH property length of 5 bytes",
            .v5,
            frame(0x30, str("t") + [0x80, 0x80, 0x80, 0x80, 0x01]),
            malformed
        ),
        Case(
            "PUBLISH duplicate message expiry",
            .v5,
            publish5(properties: [0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
            protocolError
        ),
        Case("PUBLISH duplicate topic alias", .v5, publish5(properties: [0x23, 0, 1, 0x23, 0, 1]), protocolError),
        Case(
            "PUBLISH duplicate content type",
            .v5,
            publish5(properties: [0x03] + str("a") + [0x03] + str("b")),
            protocolError
        ),
        Case("PUBLISH session expiry not allowed", .v5, publish5(properties: [0x11, 0, 0, 0, 1]), protocolError),
        Case("PUBLISH reason string not allowed", .v5, publish5(properties: [0x1F] + str("r")), protocolError),
        Case("PUBLISH unknown property 0x05", .v5, publish5(properties: [0x05, 0x00]), malformed),
        Case("PUBLISH unknown property 0x7F", .v5, publish5(properties: [0x7F, 0x00]), malformed),
        Case("PUBLISH property identifier 0", .v5, publish5(properties: [0x00]), malformed),
        Case("PUBLISH two-byte property identifier", .v5, publish5(properties: [0x81, 0x01, 0x00]), malformed),
        Case("PUBLISH topic alias 0", .v5, publish5(properties: [0x23, 0, 0]), protocolError),
        Case("PUBLISH subscription identifier 0", .v5, publish5(properties: [0x0B, 0x00]), protocolError),
        Case(
            "PUBLISH subscription identifier of 5 bytes",
            .v5,
            publish5(properties: [0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            malformed
        ),
        Case("PUBLISH subscription identifier cut short", .v5, publish5(properties: [0x0B, 0x80]), malformed),
        Case("PUBLISH payload format indicator 2", .v5, publish5(properties: [0x01, 0x02]), protocolError),
        Case("PUBLISH message expiry cut short", .v5, publish5(properties: [0x02, 0x00, 0x00]), malformed),
        Case("PUBLISH topic alias cut short", .v5, publish5(properties: [0x23, 0x01]), malformed),
        Case("PUBLISH user property without value", .v5, publish5(properties: [0x26] + str("k")), malformed),
        Case("PUBLISH correlation data cut short", .v5, publish5(properties: [0x09, 0x00, 0x09, 0x01]), malformed),
        Case("PUBLISH content type overlong UTF-8", .v5, publish5(properties: [0x03] + raw([0xC0, 0x80])), malformed),
        Case(
            "PUBLISH response topic truncated UTF-8",
            .v5,
            publish5(properties: [0x08] + raw([0x61, 0xE2, 0x82])),
            malformed
        ),
        Case(
            "PUBLISH user property key with U+0000",
            .v5,
            publish5(properties: [0x26] + raw([0]) + str("v")),
            malformed
        ),
    ]

    static let connectCases: [Case] = [
        Case("CONNECT reserved flag", nil, connect(flags: 0x03, str("c")), malformed),
        Case("CONNECT reserved flag", nil, connect5(flags: 0x01, str("c")), malformed),
        Case("CONNECT will QoS 3", nil, connect(flags: 0x1E, str("c") + str("w") + str("x")), malformed),
        Case("CONNECT will QoS 3", nil, connect5(flags: 0x1E, str("c") + [0] + str("w") + str("x")), malformed),
        Case("CONNECT will QoS 1 without will flag", nil, connect(flags: 0x0A, str("c")), malformed),
        Case("CONNECT will QoS 2 without will flag", nil, connect5(flags: 0x12, str("c")), malformed),
        Case("CONNECT will retain without will flag", nil, connect(flags: 0x22, str("c")), malformed),
        Case("CONNECT password without user name", nil, connect(flags: 0x42, str("c") + str("pw")), malformed),
        Case(
            "CONNECT MQIsdp password without user name",
            nil,
            frame(0x10, Wire.connectHeader(name: "MQIsdp", level: 3, flags: 0x42) + str("c") + str("pw")),
            malformed
        ),
        Case(
            "CONNECT protocol level 6",
            nil,
            frame(0x10, Wire.connectHeader(level: 6) + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT protocol level 0",
            nil,
            frame(0x10, Wire.connectHeader(level: 0) + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT protocol level 255",
            nil,
            frame(0x10, Wire.connectHeader(level: 255) + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT MQTT with level 3",
            nil,
            frame(0x10, Wire.connectHeader(level: 3) + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT MQIsdp with level 4",
            nil,
            frame(0x10, Wire.connectHeader(name: "MQIsdp", level: 4) + str("c")),
            .unsupportedProtocolVersion
        ),
        // MQTT 5 §3.1.2.1 [MQTT-3.1.2-1]: a wrong protocol name may be answered with 0x84.
        Case(
            "CONNECT protocol name MQTX",
            nil,
            frame(0x10, Wire.connectHeader(name: "MQTX") + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT protocol name mqtt",
            nil,
            frame(0x10, Wire.connectHeader(name: "mqtt", level: 5) + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT empty protocol name",
            nil,
            frame(0x10, Wire.connectHeader(name: "") + str("c")),
            .unsupportedProtocolVersion
        ),
        Case(
            "CONNECT protocol name not UTF-8",
            nil,
            frame(0x10, raw([0x4D, 0xFF]) + [4, 2, 0, 60] + str("c")),
            malformed
        ),
        Case("CONNECT protocol name cut short", nil, frame(0x10, str("MQTT")), malformed),
        Case("CONNECT protocol name length beyond the packet", nil, frame(0x10, [0x00, 0x04, 0x4D, 0x51]), malformed),
        Case("CONNECT keep alive cut short", nil, frame(0x10, str("MQTT") + [4, 2, 0]), malformed),
        Case("CONNECT client identifier missing", nil, frame(0x10, Wire.connectHeader()), malformed),
        Case("CONNECT client identifier with U+0000", nil, clientID([0x61, 0x00, 0x62]), malformed),
        Case("CONNECT client identifier with high surrogate ED A0 80", nil, clientID([0xED, 0xA0, 0x80]), malformed),
        Case(
            "CONNECT client identifier with low surrogate ED BF BF",
            nil,
            clientID([0x61, 0xED, 0xBF, 0xBF]),
            malformed
        ),
        Case("CONNECT client identifier overlong U+0000 (C0 80)", nil, clientID([0xC0, 0x80]), malformed),
        Case("CONNECT client identifier overlong U+007F (C1 BF)", nil, clientID([0xC1, 0xBF]), malformed),
        Case("CONNECT client identifier overlong '/' (E0 80 AF)", nil, clientID([0xE0, 0x80, 0xAF]), malformed),
        Case(
            "CONNECT client identifier overlong 4-byte (F0 80 80 80)",
            nil,
            clientID([0xF0, 0x80, 0x80, 0x80]),
            malformed
        ),
        Case("CONNECT client identifier truncated 3-byte sequence", nil, clientID([0x61, 0xE2, 0x82]), malformed),
        Case("CONNECT client identifier truncated 2-byte sequence", nil, clientID([0x61, 0xC3]), malformed),
        Case("CONNECT client identifier lone continuation byte", nil, clientID([0x80]), malformed),
        Case("CONNECT client identifier above U+10FFFF", nil, clientID([0xF4, 0x90, 0x80, 0x80]), malformed),
        Case("CONNECT client identifier byte FF", nil, clientID([0x61, 0xFF]), malformed),
        Case(
            "CONNECT client identifier length beyond the packet",
            nil,
            connect(flags: 0x02, [0x00, 0x10, 0x61, 0x62, 0x63]),
            malformed
        ),
        Case("CONNECT user name flag without user name", nil, connect(flags: 0x82, str("c")), malformed),
        Case("CONNECT password flag without password", nil, connect(flags: 0xC2, str("c") + str("u")), malformed),
        Case(
            "CONNECT user name with a surrogate",
            nil,
            connect(flags: 0x82, str("c") + raw([0xED, 0xB0, 0x80])),
            malformed
        ),
        Case("CONNECT will flag without will fields", nil, connect(flags: 0x06, str("c")), malformed),
        Case(
            "CONNECT will payload cut short",
            nil,
            connect(flags: 0x06, str("c") + str("w") + [0x00, 0x05, 0x61]),
            malformed
        ),
        Case(
            "CONNECT will topic with #",
            nil,
            connect(flags: 0x06, str("c") + str("a/#") + str("x")),
            .topicNameInvalid
        ),
        Case(
            "CONNECT will topic with +",
            nil,
            connect5(flags: 0x06, str("c") + [0] + str("+") + str("x")),
            .topicNameInvalid
        ),
        Case("CONNECT empty will topic", nil, connect(flags: 0x06, str("c") + str("") + str("x")), .topicNameInvalid),
        Case(
            "CONNECT will payload marked UTF-8 but is not",
            nil,
            connect5(flags: 0x06, str("c") + props([0x01, 0x01]) + str("w") + raw([0x61, 0xFF])),
            .payloadFormatInvalid
        ),
        Case("CONNECT properties missing", nil, frame(0x10, str("MQTT") + [5, 2, 0, 60]), malformed),
        Case("CONNECT receive maximum 0", nil, connect5(properties: [0x21, 0, 0], str("c")), protocolError),
        Case("CONNECT maximum packet size 0", nil, connect5(properties: [0x27, 0, 0, 0, 0], str("c")), protocolError),
        Case("CONNECT request problem information 2", nil, connect5(properties: [0x17, 2], str("c")), protocolError),
        Case("CONNECT request response information 2", nil, connect5(properties: [0x19, 2], str("c")), protocolError),
        Case(
            "CONNECT duplicate session expiry",
            nil,
            connect5(properties: [0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1], str("c")),
            protocolError
        ),
        Case(
            "CONNECT duplicate authentication method",
            nil,
            connect5(properties: [0x15] + str("a") + [0x15] + str("b"), str("c")),
            protocolError
        ),
        Case("CONNECT topic alias not allowed", nil, connect5(properties: [0x23, 0, 1], str("c")), protocolError),
        Case(
            "CONNECT will delay not allowed in CONNECT",
            nil,
            connect5(properties: [0x18, 0, 0, 0, 1], str("c")),
            protocolError
        ),
        Case(
            "CONNECT session expiry not allowed in will",
            nil,
            connect5(flags: 0x06, str("c") + props([0x11, 0, 0, 0, 1]) + str("w") + str("x")),
            protocolError
        ),
        Case(
            "CONNECT duplicate will delay",
            nil,
            connect5(flags: 0x06, str("c") + props([0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 2]) + str("w") + str("x")),
            protocolError
        ),
        Case("CONNECT trailing garbage", nil, connect(flags: 0x02, str("c") + [0x00]), malformed),
        Case("CONNECT trailing garbage", nil, connect5(str("c") + str("extra")), malformed),
    ]

    static let otherCases: [Case] = [
        // CONNACK
        Case("CONNACK reserved flag bits", .v3_1_1, frame(0x20, [0x02, 0x00]), malformed),
        Case("CONNACK reserved flag bits", .v5, frame(0x20, [0x80, 0x00, 0x00]), malformed),
        Case("CONNACK cut short", .v3_1_1, frame(0x20, [0x00]), malformed),
        Case("CONNACK trailing garbage", .v3_1_1, frame(0x20, [0, 0, 0]), malformed),
        Case("CONNACK properties missing", .v5, frame(0x20, [0, 0]), malformed),
        Case("CONNACK maximum QoS 2", .v5, frame(0x20, [0, 0] + props([0x24, 2])), protocolError),
        Case("CONNACK retain available 2", .v5, frame(0x20, [0, 0] + props([0x25, 2])), protocolError),
        Case("CONNACK wildcard subscription available 2", .v5, frame(0x20, [0, 0] + props([0x28, 2])), protocolError),
        Case(
            "CONNACK subscription identifier available 2",
            .v5,
            frame(0x20, [0, 0] + props([0x29, 2])),
            protocolError
        ),
        Case("CONNACK shared subscription available 2", .v5, frame(0x20, [0, 0] + props([0x2A, 2])), protocolError),
        Case("CONNACK receive maximum 0", .v5, frame(0x20, [0, 0] + props([0x21, 0, 0])), protocolError),
        Case("CONNACK will delay not allowed", .v5, frame(0x20, [0, 0] + props([0x18, 0, 0, 0, 0])), protocolError),
        Case(
            "CONNACK duplicate assigned client id",
            .v5,
            frame(0x20, [0, 0] + props([0x12] + str("a") + [0x12] + str("a"))),
            protocolError
        ),
        // Acknowledgements
        Case("PUBACK packet identifier 0", .v3_1_1, frame(0x40, [0, 0]), malformed),
        Case("PUBREC packet identifier 0", .v5, frame(0x50, [0, 0, 0x80]), malformed),
        Case("PUBREL packet identifier 0", .v3_1_1, frame(0x62, [0, 0]), malformed),
        Case("PUBCOMP packet identifier 0", .v5, frame(0x70, [0, 0]), malformed),
        Case("PUBACK cut short", .v3_1_1, frame(0x40, [0x01]), malformed),
        Case("PUBACK empty", .v5, [0x40, 0x00], malformed),
        Case("PUBACK reason code in 3.1.1", .v3_1_1, frame(0x40, id1 + [0x00]), malformed),
        Case("PUBACK property length beyond the packet", .v5, frame(0x40, id1 + [0x10, 0x03, 0x1F]), malformed),
        Case("PUBACK trailing garbage after properties", .v5, frame(0x40, id1 + [0x00, 0x00, 0xAA]), malformed),
        Case(
            "PUBREL subscription identifier not allowed",
            .v5,
            frame(0x62, id1 + [0x00] + props([0x0B, 1])),
            protocolError
        ),
        Case(
            "PUBCOMP duplicate reason string",
            .v5,
            frame(0x70, id1 + [0x92] + props([0x1F] + str("a") + [0x1F] + str("b"))),
            protocolError
        ),
        // SUBSCRIBE
        Case("SUBSCRIBE with no filters", .v3_1_1, frame(0x82, id1), protocolError),
        Case("SUBSCRIBE with no filters", .v5, frame(0x82, id1 + [0]), protocolError),
        Case("SUBSCRIBE packet identifier 0", .v3_1_1, frame(0x82, [0, 0] + str("a") + [0]), malformed),
        Case("SUBSCRIBE options byte missing", .v3_1_1, frame(0x82, id1 + str("a")), malformed),
        Case(
            "SUBSCRIBE second options byte missing",
            .v5,
            frame(0x82, id1 + [0] + str("a") + [1] + str("b")),
            malformed
        ),
        Case(
            "SUBSCRIBE filter length beyond the packet",
            .v3_1_1,
            frame(0x82, id1 + [0x00, 0x09, 0x61, 0x00]),
            malformed
        ),
        Case("SUBSCRIBE options reserved bits", .v3_1_1, frame(0x82, id1 + str("a") + [0x04]), malformed),
        Case("SUBSCRIBE options reserved bits", .v3_1_1, frame(0x82, id1 + str("a") + [0x80]), malformed),
        Case("SUBSCRIBE QoS 3", .v3_1_1, frame(0x82, id1 + str("a") + [0x03]), malformed),
        Case("SUBSCRIBE options reserved bit 6", .v5, frame(0x82, id1 + [0] + str("a") + [0x40]), malformed),
        Case("SUBSCRIBE options reserved bit 7", .v5, frame(0x82, id1 + [0] + str("a") + [0x81]), malformed),
        Case("SUBSCRIBE retain handling 3", .v5, frame(0x82, id1 + [0] + str("a") + [0x30]), protocolError),
        // MQTT 5 §3.8.3.1: a Maximum QoS of 3 is a protocol error.
        Case("SUBSCRIBE QoS 3", .v5, frame(0x82, id1 + [0] + str("a") + [0x03]), protocolError),
        Case(
            "SUBSCRIBE two subscription identifiers",
            .v5,
            frame(0x82, id1 + props([0x0B, 1, 0x0B, 2]) + str("a") + [0]),
            protocolError
        ),
        Case(
            "SUBSCRIBE subscription identifier 0",
            .v5,
            frame(0x82, id1 + props([0x0B, 0]) + str("a") + [0]),
            protocolError
        ),
        Case(
            "SUBSCRIBE reason string not allowed",
            .v5,
            frame(0x82, id1 + props([0x1F] + str("r")) + str("a") + [0]),
            protocolError
        ),
        Case("SUBSCRIBE filter with U+0000", .v3_1_1, frame(0x82, id1 + raw([0x61, 0x00]) + [0]), malformed),
        Case(
            "SUBSCRIBE filter overlong UTF-8",
            .v5,
            frame(0x82, id1 + [0] + raw([0xE0, 0x80, 0xAF]) + [0]),
            malformed
        ),
        // SUBACK
        Case("SUBACK packet identifier 0", .v3_1_1, frame(0x90, [0, 0, 0]), malformed),
        Case("SUBACK properties missing", .v5, frame(0x90, id1), malformed),
        Case(
            "SUBACK subscription identifier not allowed",
            .v5,
            frame(0x90, id1 + props([0x0B, 1]) + [0]),
            protocolError
        ),
        // UNSUBSCRIBE / UNSUBACK
        Case("UNSUBSCRIBE with no filters", .v3_1_1, frame(0xA2, id1), protocolError),
        Case("UNSUBSCRIBE with no filters", .v5, frame(0xA2, id1 + [0]), protocolError),
        Case("UNSUBSCRIBE packet identifier 0", .v3_1_1, frame(0xA2, [0, 0] + str("a")), malformed),
        Case("UNSUBSCRIBE filter cut short", .v3_1_1, frame(0xA2, id1 + [0x00, 0x05, 0x61]), malformed),
        Case(
            "UNSUBSCRIBE subscription identifier not allowed",
            .v5,
            frame(0xA2, id1 + props([0x0B, 1]) + str("a")),
            protocolError
        ),
        Case("UNSUBACK reason codes in 3.1.1", .v3_1_1, frame(0xB0, id1 + [0x00]), malformed),
        Case("UNSUBACK packet identifier 0", .v5, frame(0xB0, [0, 0, 0]), malformed),
        Case("UNSUBACK properties missing", .v5, frame(0xB0, id1), malformed),
        // PINGREQ / PINGRESP / DISCONNECT
        Case("PINGREQ with a body", .v3_1_1, frame(0xC0, [0x00]), malformed),
        Case("PINGRESP with a body", .v5, frame(0xD0, [0x00, 0x00]), malformed),
        Case("DISCONNECT with a body", .v3_1_1, frame(0xE0, [0x00]), malformed),
        Case("DISCONNECT property length beyond the packet", .v5, frame(0xE0, [0x00, 0x04, 0x11]), malformed),
        Case("DISCONNECT topic alias not allowed", .v5, frame(0xE0, [0x00] + props([0x23, 0, 1])), protocolError),
        Case(
            "DISCONNECT duplicate session expiry",
            .v5,
            frame(0xE0, [0x00] + props([0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 0])),
            protocolError
        ),
        Case("DISCONNECT trailing garbage", .v5, frame(0xE0, [0x00, 0x00, 0x00]), malformed),
        // AUTH
        Case("AUTH in MQTT 3.1.1", .v3_1_1, [0xF0, 0x00], malformed),
        Case("AUTH before the version is known", nil, [0xF0, 0x00], malformed),
        Case("AUTH reason code 0x87", .v5, frame(0xF0, [0x87, 0x00]), malformed),
        Case("AUTH session expiry not allowed", .v5, frame(0xF0, [0x18] + props([0x11, 0, 0, 0, 1])), protocolError),
        Case(
            "AUTH duplicate authentication data",
            .v5,
            frame(0xF0, [0x18] + props([0x16, 0, 0, 0x16, 0, 0])),
            protocolError
        ),
        Case("AUTH trailing garbage", .v5, frame(0xF0, [0x18, 0x00, 0xAA]), malformed),
    ]

    /// Packets over the maximum size, given only their fixed header.
    static let sizeCases: [Case] = [
        Case(
            "PUBLISH of 256 MiB, fixed header only",
            .v3_1_1,
            [0x30, 0xFF, 0xFF, 0xFF, 0x7F],
            .packetTooLarge,
            maximum: 65_536
        ),
        Case("CONNECT of 64 KiB, fixed header only", nil, [0x10, 0x80, 0x80, 0x04], .packetTooLarge, maximum: 65_536),
        Case("PUBLISH one byte over the maximum", .v5, [0x30] + Wire.vbi(65_533), .packetTooLarge, maximum: 65_536),
        Case("PINGREQ with a body over a tiny maximum", .v5, [0xC0, 0x01], .packetTooLarge, maximum: 2),
    ]

    static let allCases = fixedHeaderCases + publishCases + connectCases + otherCases + sizeCases

    @Test("is refused with the right code", arguments: allCases)
    func refused(_ testCase: Case) throws {
        let error = try #require(
            Wire.decodeError(testCase.bytes, version: testCase.version, maximumPacketSize: testCase.maximumPacketSize)
        )
        #expect(error.code == testCase.code, "\(error)")
        #expect(error.reasonCode.rawValue == Self.expectedReasonCode(testCase.code))
        #expect(error.reasonCode.isFailure)
    }

    @Test("is refused however the bytes arrive", arguments: allCases.filter { $0.bytes.count < 512 })
    func refusedWhenDripFed(_ testCase: Case) {
        var decoder = MQTTPacketDecoder(
            maximumPacketSize: testCase.maximumPacketSize,
            protocolVersion: testCase.version
        )
        var buffer = ByteBuffer()
        for (index, byte) in testCase.bytes.enumerated() {
            buffer.writeInteger(byte)
            do throws(MQTTError) {
                let packet = try decoder.decodePacket(buffer: &buffer)
                #expect(packet == nil, "decoded \(String(describing: packet)) from \(index + 1) bytes")
            } catch {
                #expect(error.code == testCase.code)
                return
            }
        }
        Issue.record("no error after all \(testCase.bytes.count) bytes")
    }

    @Test("a packet over the maximum is refused from its first 5 bytes")
    func tooLargeBeforeBody() throws {
        // A 1 MiB PUBLISH against a 64 KiB maximum: only its fixed header (and a little) arrives.
        let huge = Wire.encode(
            .publish(PublishPacket(topic: "t", payload: .pattern(count: 1 << 20))),
            version: .v5
        )
        var decoder = MQTTPacketDecoder(maximumPacketSize: 64 * 1024, protocolVersion: .v5)
        var buffer = ByteBuffer()
        buffer.writeBytes(huge.prefix(1))
        #expect(try decoder.decodePacket(buffer: &buffer) == nil)
        buffer.writeBytes(huge[1..<3])
        #expect(try decoder.decodePacket(buffer: &buffer) == nil)
        buffer.writeBytes(huge[3..<5])
        let error = #expect(throws: MQTTError.self) { _ = try decoder.decodePacket(buffer: &buffer) }
        #expect(error?.code == .packetTooLarge)
        #expect(error?.reasonCode == .packetTooLarge)
    }

    @Test("a packet of exactly the maximum size is accepted")
    func exactlyMaximum() throws {
        let packet = MQTTPacket.publish(PublishPacket(topic: "t", payload: .pattern(count: 1000)))
        let bytes = Wire.encode(packet, version: .v3_1_1)
        let result = try Wire.decode(bytes, version: .v3_1_1, maximumPacketSize: bytes.count)
        #expect(result.packet == packet)
        let error = Wire.decodeError(bytes, version: .v3_1_1, maximumPacketSize: bytes.count - 1)
        #expect(error?.code == .packetTooLarge)
    }

    @Test("MQTT 5 accepts a password without a user name")
    func v5PasswordWithoutUsername() throws {
        let bytes = Self.connect5(flags: 0x42, Self.str("c") + Self.str("pw"))
        guard case .connect(let connect) = try Wire.decodeExactly(bytes, version: nil) else {
            Issue.record("expected CONNECT")
            return
        }
        #expect(connect.username == nil)
        #expect(connect.password == ByteBuffer(string: "pw"))
    }

    @Test("a decoded packet stops at its own end; the next packet's errors are its own")
    func errorsStayWithTheirPacket() throws {
        var decoder = MQTTPacketDecoder(protocolVersion: .v3_1_1)
        var buffer = ByteBuffer(bytes: [0xC0, 0x00, 0x00, 0x00])
        #expect(try decoder.decodePacket(buffer: &buffer) == .pingreq)
        let error = #expect(throws: MQTTError.self) { _ = try decoder.decodePacket(buffer: &buffer) }
        #expect(error?.code == .malformedPacket)
    }

    @Test("errors and descriptions carry no secrets or payloads")
    func noSecrets() {
        let connect = ConnectPacket(
            clientIdentifier: "c",
            username: "alice",
            password: ByteBuffer(string: "hunter2-secret"),
            will: .init(topic: "w", payload: ByteBuffer(string: "will-payload-secret"))
        )
        #expect(!connect.description.contains("hunter2"))
        #expect(!connect.description.contains("will-payload-secret"))
        let publish = PublishPacket(topic: "t", payload: ByteBuffer(string: "payload-secret"))
        #expect(!publish.description.contains("payload-secret"))

        // A client identifier that is not UTF-8: the error names the problem, not the bytes.
        let error = Wire.decodeError(Self.clientID(Array("secret".utf8) + [0xFF]), version: nil)
        #expect(error.map { !$0.description.contains("secret") } == true)
    }
}
