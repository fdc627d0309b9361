import MQTTCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

extension ClientCore {
    /// The bootstrap for one connection attempt: TLS if configured, then either the MQTT
    /// handlers directly or, for WebSocket, an HTTP upgrade that adds them once it succeeded.
    func makeBootstrap(connectionID: Int) throws -> ClientBootstrap {
        let tlsContext = try makeSSLContext()
        let serverName =
            configuration.tlsServerName ?? (Self.isIPAddress(configuration.host) ? nil : configuration.host)
        let configuration = self.configuration
        let loopBoundSelf = NIOLoopBound(self, eventLoop: eventLoop)
        let maximumPacketSize = configuration.inboundMaximumPacketSize
        let version = configuration.protocolVersion

        @Sendable func addMQTTHandlers(to channel: any Channel, awaitsUpgrade: Bool) throws {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(
                ByteToMessageHandler(ClientPacketDecoder(version: version, maximumPacketSize: maximumPacketSize))
            )
            let handler = MQTTClientChannelHandler(
                core: loopBoundSelf.value,
                connectionID: connectionID,
                version: version,
                awaitsUpgrade: awaitsUpgrade
            )
            try sync.addHandler(handler)
        }

        return ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        let tls = try NIOSSLClientHandler(context: tlsContext, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHandler(tls)
                        try channel.pipeline.syncOperations.addHandler(
                            TransportErrorObserver { error in
                                loopBoundSelf.value.transportSetupFailed(connectionID, error: error)
                            }
                        )
                    }
                    guard case .webSocket(let path, _) = configuration.transport else {
                        try addMQTTHandlers(to: channel, awaitsUpgrade: false)
                        return
                    }
                    let upgrader = NIOTypedWebSocketClientUpgrader<Void>(
                        maxFrameSize: configuration.webSocketMaximumFrameSize,
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(WebSocketStreamHandler())
                                try addMQTTHandlers(to: channel, awaitsUpgrade: true)
                            }
                        }
                    )
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(configuration.host):\(configuration.port)")
                    headers.add(name: "Sec-WebSocket-Protocol", value: "mqtt")
                    headers.add(name: "Content-Length", value: "0")
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                    let upgrade = NIOTypedHTTPClientUpgradeConfiguration<Void>(
                        upgradeRequestHead: head,
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in
                            channel.eventLoop.makeFailedFuture(
                                MQTTClientError.webSocketUpgradeFailed(
                                    "the server did not switch to WebSocket at \(path)"
                                )
                            )
                        }
                    )
                    var pipelineConfiguration = NIOUpgradableHTTPClientPipelineConfiguration(
                        upgradeConfiguration: upgrade
                    )
                    // Bytes that arrive with the 101 response belong to the WebSocket stream.
                    pipelineConfiguration.leftOverBytesStrategy = .forwardBytes
                    let upgraded = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: pipelineConfiguration
                    )
                    upgraded.whenComplete { result in
                        switch result {
                        case .success:
                            // Writes pass the upgrade handler from now on.
                            loopBoundSelf.value.webSocketUpgraded(connectionID)
                        case .failure(let error):
                            let wrapped =
                                error as? MQTTClientError
                                ?? MQTTClientError.webSocketUpgradeFailed(
                                    "the WebSocket upgrade failed",
                                    underlying: error
                                )
                            loopBoundSelf.value.transportSetupFailed(connectionID, error: wrapped)
                            channel.close(promise: nil)
                        }
                    }
                }
            }
    }

    private func makeSSLContext() throws -> NIOSSLContext? {
        guard let tls = configuration.tlsConfiguration else { return nil }
        if let sslContext { return sslContext }
        let context = try NIOSSLContext(configuration: tls)
        sslContext = context
        return context
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
