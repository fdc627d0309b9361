import NIOCore
import NIOSSL

extension MQTTBroker {
    /// The handlers of a connection on a TLS listener: the TLS handler with the provider's
    /// current context, then a ``TLSHandshakeHandler`` that, once the handshake succeeded, adds
    /// the MQTT connection handler with the verified client certificate (if the client
    /// presented one). Call it on the channel's event loop.
    func addTLSHandlers(to channel: any Channel, tls: MQTTTLSContextProvider) throws {
        let core = self.core
        let connectTimeout = core.configuration.limits.connectTimeout
        let handshake = TLSHandshakeHandler(
            logger: core.logger,
            listener: "mqtts",
            timeout: .seconds(Int64(connectTimeout > 0 ? connectTimeout : 10)),
            onFailure: { core.metrics.connectionRefused("tls") },
            onHandshakeCompleted: { [self] channel in
                let certificate = try MQTTPeerCertificate.verifiedPeer(of: channel)
                try self.addConnectionHandler(to: channel, transport: .tls, peerCertificate: certificate)
            }
        )
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(NIOSSLServerHandler(context: tls.context))
        try sync.addHandler(handshake)
    }
}
