import MQTTCore
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// An MQTT connection over a real socket whose every packet the test writes by hand, for
/// exchanges ``MQTTClient`` completes by itself (a QoS 2 PUBLISH left without PUBREL, say).
final class SocketRawClient: Sendable {
    let channel: any Channel
    let version: MQTTProtocolVersion
    private let received: RawPackets

    private init(channel: any Channel, version: MQTTProtocolVersion, received: RawPackets) {
        self.channel = channel
        self.version = version
        self.received = received
    }

    /// Opens a connection to `port` (no CONNECT sent yet).
    static func open(port: Int, version: MQTTProtocolVersion = .v5) async throws -> SocketRawClient {
        let received = RawPackets()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(20))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(MQTTPacketDecoder(protocolVersion: version))
                    )
                    try channel.pipeline.syncOperations.addHandler(RawRecorder(received: received))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return SocketRawClient(channel: channel, version: version, received: received)
    }

    /// Sends CONNECT and waits for a successful CONNACK.
    @discardableResult
    func connect(_ connect: ConnectPacket) async throws -> ConnAckPacket {
        try await send(.connect(connect))
        guard case .connack(let connAck) = try await next(.connack) else {
            throw SocketTestTimeout(description: "no CONNACK")
        }
        try #require(connAck.reasonCode == .success, "CONNACK \(connAck.reasonCode)")
        return connAck
    }

    func send(_ packet: MQTTPacket) async throws {
        var buffer = channel.allocator.buffer(capacity: 64)
        packet.write(to: &buffer, version: version)
        try await channel.writeAndFlush(buffer)
    }

    /// Every packet received so far.
    var packets: [MQTTPacket] { received.all }

    /// Whether the broker closed the connection.
    var isClosed: Bool { received.isClosed }

    /// The first packet of `type` received at or after index `start`, waiting up to `timeout`.
    @discardableResult
    func next(
        _ type: MQTTPacketType,
        from start: Int = 0,
        within timeout: Duration = .seconds(10)
    ) async throws
        -> MQTTPacket
    {
        var found: MQTTPacket?
        try await eventually("a \(type) packet", within: timeout) {
            found = self.received.all.dropFirst(start).first { $0.type == type }
            return found != nil
        }
        return found!
    }

    func close() async {
        try? await channel.close()
    }
}

private final class RawPackets: Sendable {
    private struct State {
        var packets: [MQTTPacket] = []
        var closed = false
    }

    private let state = Mutex(State())

    func append(_ packet: MQTTPacket) { state.withLock { $0.packets.append(packet) } }
    func markClosed() { state.withLock { $0.closed = true } }
    var all: [MQTTPacket] { state.withLock { $0.packets } }
    var isClosed: Bool { state.withLock { $0.closed } }
}

private final class RawRecorder: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket
    let received: RawPackets

    init(received: RawPackets) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        received.markClosed()
        context.fireChannelInactive()
    }
}
