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
/// own channel handler, so WebSocket clients get the same code path as TCP clients.
///
/// On the HTTPS port (behind HummingbirdTLS's `TLSChannel`) the transport is
/// `.secureWebSocket`, and the client certificate verified in the TLS handshake, if any, goes
/// with the connection to the broker's authenticator.
struct MQTTWebSocketChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case mqtt(any Channel)
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
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

    init(
        responder: @escaping HTTPChannelHandler.Responder,
        broker: MQTTBroker,
        path: String,
        transport: MQTTTransport = .webSocket
    ) {
        self.responder = responder
        self.broker = broker
        self.path = path
        self.transport = transport
        self.maximumFrameSize = max(broker.configuration.limits.maximumPacketSize, 1 << 16)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let path = self.path
            let broker = self.broker
            let transport = self.transport
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: maximumFrameSize,
                shouldUpgrade: { channel, head in
                    let requestPath = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                    guard requestPath == path else { return channel.eventLoop.makeSucceededFuture(nil) }
                    let offered = head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }
                    guard let chosen = Self.subprotocols.first(where: { offered.contains($0) }) else {
                        logger.debug("WebSocket upgrade without the mqtt subprotocol refused")
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Sec-WebSocket-Protocol", value: chosen)
                    return channel.eventLoop.makeSucceededFuture(headers)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        let secure = transport == .secureWebSocket
                        let certificate = secure ? try MQTTPeerCertificate.verifiedPeer(of: channel) : nil
                        try channel.pipeline.syncOperations.addHandler(WebSocketMQTTHandler())
                        try broker.addConnectionHandler(to: channel, transport: transport, peerCertificate: certificate)
                        return UpgradeResult.mqtt(channel)
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let codec = HTTP1ToHTTPServerCodec(secure: transport == .secureWebSocket)
                        try channel.pipeline.syncOperations.addHandler(codec)
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        return UpgradeResult.http(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: serverUpgradeConfiguration)
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .http(let asyncChannel):
                await handleHTTP(asyncChannel: asyncChannel, logger: logger)
            case .mqtt(let channel):
                try? await channel.closeFuture.get()
            }
        } catch {
            logger.debug("HTTP connection setup failed", metadata: ["error": "\(error)"])
        }
    }
}
