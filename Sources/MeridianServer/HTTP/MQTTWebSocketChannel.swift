import HTTPTypes
import HummingbirdCore
import Logging
import MQTTBroker
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The HTTP port's child channel: plain HTTP/1.1 for the API, or — for a WebSocket upgrade on
/// the MQTT path asking for the `mqtt` subprotocol — MQTT over WebSocket handled by the broker's
/// own channel handler, so WebSocket clients get the same code path as TCP clients, or — for a
/// WebSocket upgrade on `/api/v1/stream` — the live stream (``StreamEndpoint``).
///
/// On the HTTPS port (behind HummingbirdTLS's `TLSChannel`) the transport is
/// `.secureWebSocket`, and the client certificate verified in the TLS handshake, if any, goes
/// with the connection to the broker's authenticator.
///
/// A WebSocket upgrade it declines (another path, no MQTT subprotocol, a broken handshake) is
/// answered with a 4xx saying why (``WebSocketUpgradeRefusal``), then the connection closes; an
/// upgrade to any other protocol (`h2c`, say) is ignored: the request is served as plain HTTP,
/// then the connection closes. NIO's upgrade handler drops the request of an upgrade no
/// upgrader takes, so an ``UpgradeRequestRecorder`` in front of it keeps the request for that.
struct MQTTWebSocketChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case mqtt(any Channel)
        /// A live-stream connection (``StreamChannelHandler`` runs it).
        case stream(any Channel)
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A declined WebSocket upgrade: the client is told why, then the connection closes.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, WebSocketUpgradeRefusal)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    /// Subprotocols accepted for MQTT, in order of preference (`mqttv3.1` is what some old
    /// MQTT 3.1 clients ask for).
    static let subprotocols = ["mqtt", "mqttv3.1"]

    let responder: HTTPChannelHandler.Responder
    let broker: MQTTBroker
    let path: String
    let maximumFrameSize: Int
    /// `.webSocket` on the HTTP port, `.secureWebSocket` on the HTTPS port.
    let transport: MQTTTransport
    /// The live stream; nil: upgrades of its path are refused like any other path's.
    let stream: StreamEndpoint?

    init(
        responder: @escaping HTTPChannelHandler.Responder,
        broker: MQTTBroker,
        path: String,
        transport: MQTTTransport = .webSocket,
        stream: StreamEndpoint? = nil
    ) {
        self.responder = responder
        self.broker = broker
        self.path = path
        self.transport = transport
        self.stream = stream
        self.maximumFrameSize = max(broker.configuration.limits.maximumPacketSize, 1 << 16)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let path = self.path
            let broker = self.broker
            let transport = self.transport
            let recorder = NIOLoopBound(UpgradeRequestRecorder(), eventLoop: channel.eventLoop)
            let stream = self.stream
            let streamPath = stream == nil ? nil : StreamEndpoint.path
            let streamDecision = StreamEndpoint.Decision()
            let mqttUpgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: maximumFrameSize,
                shouldUpgrade: { channel, head in
                    guard case .success(let chosen) = Self.negotiate(head, path: path, streamPath: streamPath) else {
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Sec-WebSocket-Protocol", value: chosen)
                    return channel.eventLoop.makeSucceededFuture(headers)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        recorder.value.leave()
                        let secure = transport == .secureWebSocket
                        let certificate = secure ? try MQTTPeerCertificate.verifiedPeer(of: channel) : nil
                        try channel.pipeline.syncOperations.addHandler(WebSocketMQTTHandler())
                        try broker.addConnectionHandler(to: channel, transport: transport, peerCertificate: certificate)
                        return UpgradeResult.mqtt(channel)
                    }
                }
            )
            var routes: [String: NIOTypedWebSocketServerUpgrader<UpgradeResult>] = [:]
            if let stream {
                routes[StreamEndpoint.path] = stream.upgrader(decision: streamDecision, logger: logger) { channel in
                    recorder.value.leave()
                    return UpgradeResult.stream(channel)
                }
            }
            let upgrader = WebSocketPathUpgrader(routes: routes, fallback: mqttUpgrader)
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let codec = HTTP1ToHTTPServerCodec(secure: transport == .secureWebSocket)
                        try channel.pipeline.syncOperations.addHandler(codec)
                        // Keep-alive connections close when the server shuts down (after the
                        // request in progress) and after a minute idle, as Hummingbird's own
                        // HTTP/1 channel does; otherwise an idle browser connection would hold
                        // graceful shutdown open.
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: .seconds(60), logger: logger)
                        )
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        let recorder = recorder.value
                        if let request = recorder.upgradeRequest, WebSocketUpgradeRefusal.isWebSocketUpgrade(request) {
                            recorder.leave()
                            if streamPath != nil, WebSocketPathUpgrader<UpgradeResult>.path(of: request) == streamPath {
                                // NIO's handshake checks, then the stream's own (a bad token).
                                let refusal = Self.handshakeRefusal(request) ?? streamDecision.refusal ?? .malformedHandshake
                                return UpgradeResult.refused(asyncChannel, refusal)
                            }
                            guard case .failure(let refusal) = Self.negotiate(request, path: path, streamPath: streamPath) else {
                                // Accepted by us, so refused by NIO's own handshake checks.
                                return UpgradeResult.refused(asyncChannel, .malformedHandshake)
                            }
                            return UpgradeResult.refused(asyncChannel, refusal)
                        }
                        // Not an upgrade (the request went through), or one to a protocol we do
                        // not speak: serve it as plain HTTP, closing the connection after it.
                        recorder.replay()
                        return UpgradeResult.http(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: serverUpgradeConfiguration
            )
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let sync = channel.pipeline.syncOperations
            let result = try sync.configureUpgradableHTTPServerPipeline(configuration: configuration)
            let upgradeHandler = try sync.handler(type: NIOTypedHTTPServerUpgradeHandler<UpgradeResult>.self)
            try sync.addHandler(recorder.value, position: .before(upgradeHandler))
            try sync.addHandler(HTTPParseErrorResponder(), position: .before(recorder.value))
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .http(let asyncChannel):
                await handleHTTP(asyncChannel: asyncChannel, logger: logger)
            case .refused(let asyncChannel, let refusal):
                await answer(refusal, on: asyncChannel, logger: logger)
            case .mqtt(let channel), .stream(let channel):
                try? await channel.closeFuture.get()
            }
        } catch {
            logger.debug("HTTP connection setup failed", metadata: ["error": "\(error)"])
        }
    }
}
