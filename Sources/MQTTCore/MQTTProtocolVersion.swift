/// The MQTT protocol level carried in CONNECT.
///
/// Meridian speaks MQTT 3.1.1 and 5.0. MQTT 3.1 (`MQIsdp`, level 3) is accepted and treated
/// as 3.1.1, as most brokers do, so old firmware keeps working.
public enum MQTTProtocolVersion: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// MQTT 3.1 (protocol name `MQIsdp`).
    case v3_1 = 3
    /// MQTT 3.1.1.
    case v3_1_1 = 4
    /// MQTT 5.0.
    case v5 = 5

    /// Whether packets of this version carry properties and reason codes.
    @inlinable
    public var hasProperties: Bool { self == .v5 }

    public var description: String {
        switch self {
        case .v3_1: return "3.1"
        case .v3_1_1: return "3.1.1"
        case .v5: return "5.0"
        }
    }
}

/// The quality of service of a message.
public enum QoS: UInt8, Sendable, Hashable, Comparable, CustomStringConvertible {
    /// At most once: fire and forget.
    case atMostOnce = 0
    /// At least once: acknowledged with PUBACK, may be duplicated.
    case atLeastOnce = 1
    /// Exactly once: the four-packet PUBREC/PUBREL/PUBCOMP handshake.
    case exactlyOnce = 2

    public static func < (lhs: QoS, rhs: QoS) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "QoS \(rawValue)" }
}
