import NIOCore

/// Sits right after the TLS handler and reports transport errors (such as a failed
/// handshake) to the client before any MQTT or WebSocket handler exists to see them.
final class TransportErrorObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let onError: (any Error) -> Void

    init(onError: @escaping (any Error) -> Void) {
        self.onError = onError
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        onError(error)
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension TransportErrorObserver: Sendable {}
