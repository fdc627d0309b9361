import Logging
import MQTTCore
import NIOCore
import NIOEmbedded
import Testing

@testable import MQTTBroker

/// A broker on one virtual-time event loop (`NIOAsyncTestingEventLoop`): time moves only when
/// a test advances it, so keep-alive, will delay and expiry are tested without waiting.
final class TestBroker: Sendable {
    let loop = NIOAsyncTestingEventLoop()
    let broker: MQTTBroker

    init(
        authenticator: any MQTTAuthenticator = AllowAllAuthenticator(),
        authorizer: any MQTTAuthorizer = AllowAllAuthorizer(),
        messageTap: any MQTTMessageTap = NoMessageTap(),
        observers: [any MQTTConnectionObserver] = [],
        store: (any MQTTSessionStore)? = nil,
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) {
        var configuration = BrokerConfiguration()
        configuration.sysInterval = 0
        configure(&configuration)
        var logger = Logger(label: "test-broker")
        logger.logLevel = .critical
        broker = MQTTBroker(
            configuration: configuration,
            eventLoopGroup: loop,
            authenticator: authenticator,
            authorizer: authorizer,
            messageTap: messageTap,
            observers: observers,
            sessionStore: store,
            logger: logger
        )
    }

    var statistics: MQTTBrokerStatistics { broker.statistics }

    /// A new, unconnected client channel.
    func client(_ version: MQTTProtocolVersion = .v5) async throws -> TestClient {
        let channel = NIOAsyncTestingChannel(loop: loop)
        let broker = self.broker
        try await loop.submit {
            try broker.addConnectionHandler(to: channel, transport: .tcp)
        }.get()
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).get()
        return TestClient(channel: channel, loop: loop, version: version)
    }

    /// A client that sent CONNECT and received a successful CONNACK.
    func connect(
        _ clientIdentifier: String,
        version: MQTTProtocolVersion = .v5,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 0,
        username: String? = nil,
        will: ConnectPacket.Will? = nil,
        properties: MQTTProperties = .init(),
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> (TestClient, ConnAckPacket) {
        let client = try await client(version)
        let connack = try await client.connect(
            clientIdentifier, cleanStart: cleanStart, keepAlive: keepAlive, username: username, will: will, properties: properties
        )
        #expect(connack.reasonCode == .success, "CONNACK for \(clientIdentifier)", sourceLocation: sourceLocation)
        return (client, connack)
    }

    /// Moves virtual time forward, running whatever falls due.
    func advance(by amount: TimeAmount) async {
        await loop.advanceTime(by: amount)
        await loop.run()
    }

    func shutdown() async {
        await broker.shutdown(timeout: .milliseconds(10))
        await loop.run()
    }
}

struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// The client side of one test connection: encodes packets in, decodes the broker's output.
final class TestClient: @unchecked Sendable {
    let channel: NIOAsyncTestingChannel
    let loop: NIOAsyncTestingEventLoop
    var version: MQTTProtocolVersion
    private var decoder: MQTTPacketDecoder
    private var pending = ByteBuffer()
    private var nextPacketIdentifier: UInt16 = 1

    init(channel: NIOAsyncTestingChannel, loop: NIOAsyncTestingEventLoop, version: MQTTProtocolVersion) {
        self.channel = channel
        self.loop = loop
        self.version = version
        self.decoder = MQTTPacketDecoder(protocolVersion: version)
    }

    func packetIdentifier() -> UInt16 {
        defer { nextPacketIdentifier = nextPacketIdentifier == UInt16.max ? 1 : nextPacketIdentifier + 1 }
        return nextPacketIdentifier
    }

    /// Sends a packet as the client.
    func send(_ packet: MQTTPacket) async throws {
        var buffer = ByteBuffer()
        packet.write(to: &buffer, version: version)
        try await sendRaw(buffer)
    }

    /// Sends raw bytes as the client.
    func sendRaw(_ buffer: ByteBuffer) async throws {
        try await channel.writeInbound(buffer)
        await loop.run()
    }

    func sendRaw(_ bytes: [UInt8]) async throws {
        try await sendRaw(ByteBuffer(bytes: bytes))
    }

    /// Whether the broker still has the connection open.
    var isActive: Bool {
        get async { (try? await loop.submit { self.channel.isActive }.get()) ?? false }
    }

    /// Every packet the broker has sent so far and the test has not consumed, without waiting.
    func drain() async throws -> [MQTTPacket] {
        var packets = backlog
        backlog.removeAll()
        packets.append(contentsOf: try await readAvailable())
        return packets
    }

    private func readAvailable() async throws -> [MQTTPacket] {
        await loop.run()
        while let buffer = try await channel.readOutbound(as: ByteBuffer.self) {
            var buffer = buffer
            pending.writeBuffer(&buffer)
        }
        var packets: [MQTTPacket] = []
        while let packet = try decoder.decodePacket(buffer: &pending) {
            packets.append(packet)
        }
        return packets
    }

    private var backlog: [MQTTPacket] = []

    /// The next packet from the broker, waiting (in real time) up to `timeout` for work done
    /// off the loop, such as authentication.
    func next(timeout: Duration = .seconds(2), sourceLocation: SourceLocation = #_sourceLocation) async throws -> MQTTPacket {
        try await next(where: { _ in true }, timeout: timeout, sourceLocation: sourceLocation)
    }

    /// The next packet from the broker that satisfies `predicate`; packets before it stay
    /// queued for later `next()` calls.
    func next(
        where predicate: (MQTTPacket) -> Bool,
        timeout: Duration = .seconds(2),
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> MQTTPacket {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let index = backlog.firstIndex(where: predicate) { return backlog.remove(at: index) }
            let arrived = try await readAvailable()
            backlog.append(contentsOf: arrived)
            if !arrived.isEmpty { continue }
            if ContinuousClock.now > deadline {
                Issue.record("no packet from the broker within \(timeout)", sourceLocation: sourceLocation)
                throw TestTimeout(description: "no packet within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Asserts that the broker sent nothing more.
    func expectNothing(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let packets = try await drain()
        #expect(packets.isEmpty, "unexpected packets: \(packets.map(\.type))", sourceLocation: sourceLocation)
    }

    /// Waits until the broker closed the connection.
    func expectClosed(timeout: Duration = .seconds(2), sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let deadline = ContinuousClock.now + timeout
        while await isActive {
            if ContinuousClock.now > deadline {
                Issue.record("connection still open after \(timeout)", sourceLocation: sourceLocation)
                return
            }
            await loop.run()
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    // MARK: conveniences

    func connect(
        _ clientIdentifier: String,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 0,
        username: String? = nil,
        password: String? = nil,
        will: ConnectPacket.Will? = nil,
        properties: MQTTProperties = .init()
    ) async throws -> ConnAckPacket {
        try await send(
            .connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: clientIdentifier,
                    cleanStart: cleanStart,
                    keepAlive: keepAlive,
                    username: username,
                    password: password.map { ByteBuffer(string: $0) },
                    will: will,
                    properties: properties
                )
            )
        )
        guard case .connack(let connack) = try await next() else {
            throw TestTimeout(description: "expected CONNACK")
        }
        return connack
    }

    @discardableResult
    func subscribe(_ filter: String, qos: QoS = .atLeastOnce, options: SubscriptionOptions? = nil, properties: MQTTProperties = .init()) async throws -> SubAckPacket {
        let opts = options ?? SubscriptionOptions(qos: qos)
        return try await subscribe([SubscribePacket.Subscription(topicFilter: filter, options: opts)], properties: properties)
    }

    func subscribe(_ subscriptions: [SubscribePacket.Subscription], properties: MQTTProperties = .init()) async throws -> SubAckPacket {
        let id = packetIdentifier()
        try await send(.subscribe(SubscribePacket(packetIdentifier: id, subscriptions: subscriptions, properties: properties)))
        guard case .suback(let suback) = try await next() else { throw TestTimeout(description: "expected SUBACK") }
        #expect(suback.packetIdentifier == id)
        return suback
    }

    @discardableResult
    func unsubscribe(_ filters: [String]) async throws -> UnsubAckPacket {
        let id = packetIdentifier()
        try await send(.unsubscribe(UnsubscribePacket(packetIdentifier: id, topicFilters: filters)))
        guard case .unsuback(let unsuback) = try await next() else { throw TestTimeout(description: "expected UNSUBACK") }
        return unsuback
    }

    /// Publishes; returns the PUBACK / PUBREC (QoS 1 / 2) without completing QoS 2.
    @discardableResult
    func publish(_ topic: String, _ payload: String, qos: QoS = .atMostOnce, retain: Bool = false, properties: MQTTProperties = .init()) async throws -> PublishAckPacket? {
        let id: UInt16? = qos == .atMostOnce ? nil : packetIdentifier()
        try await send(
            .publish(PublishPacket(topic: topic, payload: ByteBuffer(string: payload), qos: qos, retain: retain, packetIdentifier: id, properties: properties))
        )
        switch qos {
        case .atMostOnce:
            return nil
        case .atLeastOnce:
            let packet = try await next(where: { if case .puback(let a) = $0 { a.packetIdentifier == id } else { false } })
            guard case .puback(let ack) = packet else { throw TestTimeout(description: "expected PUBACK") }
            return ack
        case .exactlyOnce:
            let packet = try await next(where: { if case .pubrec(let a) = $0 { a.packetIdentifier == id } else { false } })
            guard case .pubrec(let ack) = packet else { throw TestTimeout(description: "expected PUBREC") }
            return ack
        }
    }

    /// Completes a QoS 2 publish after PUBREC.
    func release(_ identifier: UInt16) async throws {
        try await send(.pubrel(PublishAckPacket(packetIdentifier: identifier)))
        guard case .pubcomp = try await next(where: { if case .pubcomp = $0 { true } else { false } }) else {
            throw TestTimeout(description: "expected PUBCOMP")
        }
    }

    /// The next packet, which must be a PUBLISH.
    func nextPublish(sourceLocation: SourceLocation = #_sourceLocation) async throws -> PublishPacket {
        let packet = try await next(sourceLocation: sourceLocation)
        guard case .publish(let publish) = packet else {
            Issue.record("expected PUBLISH, got \(packet.type)", sourceLocation: sourceLocation)
            throw TestTimeout(description: "expected PUBLISH")
        }
        return publish
    }

    func disconnect(_ reasonCode: ReasonCode = .normalDisconnection, properties: MQTTProperties = .init()) async throws {
        try await send(.disconnect(DisconnectPacket(reasonCode: reasonCode, properties: properties)))
    }

    /// Drops the connection without DISCONNECT (the will fires).
    func drop() async throws {
        try await channel.close().get()
        await loop.run()
    }
}

extension ByteBuffer {
    var string: String { String(buffer: self) }
}
