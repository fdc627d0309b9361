import HummingbirdCore
import HummingbirdTLS
import Logging
import MQTTBroker
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// The HTTPS port's child channel: HummingbirdTLS's `TLSChannel` around the HTTP port's own
/// ``MQTTWebSocketChannel`` (so HTTPS serves the same routes, plus MQTT over secure WebSocket).
///
/// A `TLSChannel` keeps one TLS context for its lifetime; to let a reload take effect without a
/// restart, each accepted connection is set up by the `TLSChannel` current at that moment
/// (``HTTPSChannels/replace(with:)`` swaps it). A failed handshake is logged in one line by a
/// ``TLSHandshakeHandler`` placed right behind the TLS handler.
struct HTTPSChildChannel: ServerChildChannel {
    typealias Value = MQTTWebSocketChannel.Value

    let base: MQTTWebSocketChannel
    let channels: HTTPSChannels
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let tlsChannel: TLSChannel<MQTTWebSocketChannel>
        do {
            tlsChannel = try channels.current(base: base)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        let handshakeLogger = self.logger
        return tlsChannel.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let sync = channel.pipeline.syncOperations
            let tls = try sync.handler(type: NIOSSLServerHandler.self)
            try sync.addHandler(TLSHandshakeHandler(logger: handshakeLogger, listener: "https"), position: .after(tls))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// The TLS configuration the HTTPS port's new connections use, and the `TLSChannel` built
/// from it (once Hummingbird has made the base channel; from then on, on every replace, so
/// that accepting a connection never builds a TLS context).
final class HTTPSChannels: Sendable {
    private struct State {
        var configuration: TLSConfiguration
        var base: MQTTWebSocketChannel?
        var channel: TLSChannel<MQTTWebSocketChannel>?
    }

    private let state: NIOLockedValueBox<State>

    init(configuration: TLSConfiguration) {
        state = NIOLockedValueBox(State(configuration: configuration, base: nil, channel: nil))
    }

    /// Makes `configuration` the one new HTTPS connections use. Its TLS context is built here,
    /// so a configuration swift-nio-ssl refuses throws and leaves the current one in place.
    func replace(with configuration: TLSConfiguration) throws {
        let base = state.withLockedValue { $0.base }
        var channel: TLSChannel<MQTTWebSocketChannel>?
        if let base {
            channel = try TLSChannel(base, tlsConfiguration: configuration)
        } else {
            _ = try NIOSSLContext(configuration: configuration)
        }
        state.withLockedValue { state in
            state.configuration = configuration
            state.channel = channel
        }
    }

    /// The `TLSChannel` for the current configuration around `base`.
    func current(base: MQTTWebSocketChannel) throws -> TLSChannel<MQTTWebSocketChannel> {
        try state.withLockedValue { state in
            if let channel = state.channel { return channel }
            let channel = try TLSChannel(base, tlsConfiguration: state.configuration)
            state.base = base
            state.channel = channel
            return channel
        }
    }
}
