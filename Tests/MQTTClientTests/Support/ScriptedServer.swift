import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A fake MQTT server on 127.0.0.1 whose every answer the test writes by hand, for behaviour
/// a real broker will not show on demand: withheld acknowledgements, a small receive maximum,
/// inbound topic aliases, silence to PINGREQ.
final class ScriptedServer: Sendable {
    let host = "127.0.0.1"
    let port: Int
    /// Each accepted connection, in order.
    let connections: StreamRecorder<ScriptedConnection>
    private let channel: any Channel

    private init(channel: any Channel, connections: StreamRecorder<ScriptedConnection>) {
        self.channel = channel
        self.port = channel.localAddress!.port!
        self.connections = connections
    }

    static func start() async throws -> ScriptedServer {
        let (stream, continuation) = AsyncStream.makeStream(of: ScriptedConnection.self)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = ScriptedConnection(channel: channel)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder()))
                    try channel.pipeline.syncOperations.addHandler(connection.makeHandler())
                    continuation.yield(connection)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return ScriptedServer(channel: channel, connections: StreamRecorder(stream))
    }

    /// The `index`-th connection (0-based), once it arrived.
    func connection(_ index: Int = 0) async throws -> ScriptedConnection {
        try await connections.wait(forCount: index + 1)[index]
    }

    func stop() async {
        try? await channel.close()
        for connection in connections.all { connection.close() }
    }
}

/// One connection to the ``ScriptedServer``.
final class ScriptedConnection: Sendable {
    private let channel: any Channel
    private let continuation: AsyncStream<MQTTPacket>.Continuation
    /// Every packet the client sent.
    let packets: StreamRecorder<MQTTPacket>
    private let version = NIOLockedValueBox<MQTTProtocolVersion>(.v5)

    init(channel: any Channel) {
        self.channel = channel
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTPacket.self)
        self.continuation = continuation
        self.packets = StreamRecorder(stream)
    }

    fileprivate func makeHandler() -> Handler {
        Handler(connection: self)
    }

    fileprivate final class Handler: ChannelInboundHandler {
        typealias InboundIn = MQTTPacket
        let connection: ScriptedConnection

        init(connection: ScriptedConnection) {
            self.connection = connection
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let packet = unwrapInboundIn(data)
            if case .connect(let connect) = packet {
                connection.version.withLockedValue { $0 = connect.protocolVersion }
            }
            connection.continuation.yield(packet)
        }

        func channelInactive(context: ChannelHandlerContext) {
            connection.continuation.finish()
        }
    }

    /// Whether the client's side is still open.
    var isActive: Bool { channel.isActive }

    /// The first packet of `type` from index `start` on.
    @discardableResult
    func next(
        _ type: MQTTPacketType,
        from start: Int = 0,
        within timeout: Duration = .seconds(30)
    ) async throws -> MQTTPacket {
        try await packets.first(within: timeout, from: start) { $0.type == type }
    }

    /// Packets of `type` received so far.
    func all(_ type: MQTTPacketType) -> [MQTTPacket] {
        packets.all.filter { $0.type == type }
    }

    /// Writes `packet` encoded for the client's protocol version.
    func send(_ packet: MQTTPacket) async throws {
        var buffer = ByteBuffer()
        packet.write(to: &buffer, version: version.withLockedValue { $0 })
        try await channel.writeAndFlush(buffer)
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// The PUBLISH inside `packet`, if it is one.
func publishPacket(_ packet: MQTTPacket) -> PublishPacket? {
    if case .publish(let publish) = packet { return publish }
    return nil
}
