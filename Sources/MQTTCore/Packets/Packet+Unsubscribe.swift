import NIOCore

/// UNSUBSCRIBE: removes subscriptions (MQTT 5 §3.10).
public struct UnsubscribePacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var topicFilters: [String]
    public var properties: MQTTProperties

    public init(packetIdentifier: UInt16, topicFilters: [String], properties: MQTTProperties = .init()) {
        self.packetIdentifier = packetIdentifier
        self.topicFilters = topicFilters
        self.properties = properties
    }

    static func decode(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTError) -> UnsubscribePacket {
        let id = try readPacketIdentifier(&buffer, in: "UNSUBSCRIBE")
        let properties = version == .v5 ? try MQTTProperties.read(from: &buffer, allowed: .unsubscribe) : MQTTProperties()
        var filters: [String] = []
        while buffer.readableBytes > 0 {
            filters.append(try buffer.readMQTTString())
        }
        guard !filters.isEmpty else { throw MQTTError.protocolError("UNSUBSCRIBE without any topic filter") }
        return UnsubscribePacket(packetIdentifier: id, topicFilters: filters, properties: properties)
    }

    func remainingLength(version: MQTTProtocolVersion) -> Int {
        var size = 2 + (version == .v5 ? properties.encodedSize : 0)
        for f in topicFilters { size += 2 + f.utf8.count }
        return size
    }

    func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTFixedHeader(0xA2, remainingLength: remainingLength(version: version))
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.write(to: &buffer) }
        for f in topicFilters { buffer.writeMQTTString(f) }
    }
}
