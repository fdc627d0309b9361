import NIOCore
import NIOHTTP1

/// Keeps the head of a connection's first request when that request asks for a protocol
/// upgrade, so that a declined upgrade can still be answered.
///
/// NIO's `NIOTypedHTTPServerUpgradeHandler` consumes the head of an upgrade request while it
/// looks for an upgrader: when none takes it (a WebSocket upgrade ``MQTTWebSocketChannel``
/// refuses, or a protocol it does not speak, such as `h2c`), the HTTP handlers set up afterwards
/// never see the request. This handler sits right in front of the upgrade handler and records
/// the head on the way through; ``replay()`` sends the request on again as a plain HTTP request.
///
/// After the first request it passes everything on untouched, whatever its type (once an
/// upgrade has begun, raw bytes may flow through here). It is removed once the upgrade has been
/// decided either way.
final class UpgradeRequestRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private enum State {
        case awaitingFirstHead
        case inFirstRequest
        case afterFirstRequest
    }

    /// The head of the first request, if it asked for an upgrade (the same test the NIO upgrade
    /// handler applies: a non-empty `Upgrade` header).
    private(set) var upgradeRequest: HTTPRequestHead?
    private var state = State.awaitingFirstHead
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .awaitingFirstHead:
            if case .head(let head) = unwrapInboundIn(data) {
                state = .inFirstRequest
                if !head.headers[canonicalForm: "upgrade"].isEmpty {
                    upgradeRequest = head
                }
            }
        case .inFirstRequest:
            if case .end = unwrapInboundIn(data) {
                state = .afterFirstRequest
            }
        case .afterFirstRequest:
            break
        }
        context.fireChannelRead(data)
    }

    /// Sends the recorded upgrade request, if any, on as an HTTP request with `Connection:
    /// close`, then leaves the pipeline.
    ///
    /// The upgrade handler swallows the head of an upgrade request, and its end too if the
    /// end arrives before the upgrade is decided (it fails an upgrade request with a body): the
    /// head is sent again, and an end if the request's own has gone by already. Call it while
    /// the upgrade handler runs its not-upgrading completion handler: it then buffers the
    /// parts and delivers them to the HTTP handlers once those are in place.
    ///
    /// The connection closes after the answer: NIO's HTTP decoder stops parsing after a request
    /// asking for an upgrade, so it would never deliver a next request.
    func replay() {
        if let context, var head = upgradeRequest {
            upgradeRequest = nil
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            context.fireChannelRead(wrapInboundOut(.head(head)))
            if state == .afterFirstRequest {
                context.fireChannelRead(wrapInboundOut(.end(nil)))
            }
        }
        leave()
    }

    /// Leaves the pipeline; the upgrade has been decided.
    func leave() {
        guard let context else { return }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension UpgradeRequestRecorder: Sendable {}
