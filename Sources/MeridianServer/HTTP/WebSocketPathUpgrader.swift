import NIOCore
import NIOHTTP1
import NIOWebSocket

/// A WebSocket upgrader that hands each upgrade request to the upgrader of its path (without
/// the query), or to `fallback` for any other path.
///
/// NIO's upgrade handler keeps one upgrader per protocol name, and each WebSocket upgrader has
/// one frame-size limit and one pipeline set-up; this lets MQTT over WebSocket and the live
/// stream have their own on the same port.
struct WebSocketPathUpgrader<UpgradeResult: Sendable>: NIOTypedHTTPServerProtocolUpgrader {
    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []
    let routes: [String: NIOTypedWebSocketServerUpgrader<UpgradeResult>]
    let fallback: NIOTypedWebSocketServerUpgrader<UpgradeResult>

    func buildUpgradeResponse(
        channel: any Channel,
        upgradeRequest: HTTPRequestHead,
        initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        upgrader(for: upgradeRequest).buildUpgradeResponse(
            channel: channel,
            upgradeRequest: upgradeRequest,
            initialResponseHeaders: initialResponseHeaders
        )
    }

    func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<UpgradeResult> {
        upgrader(for: upgradeRequest).upgrade(channel: channel, upgradeRequest: upgradeRequest)
    }

    private func upgrader(for head: HTTPRequestHead) -> NIOTypedWebSocketServerUpgrader<UpgradeResult> {
        routes[Self.path(of: head)] ?? fallback
    }

    /// The request's path: its URI up to any `?`.
    static func path(of head: HTTPRequestHead) -> String {
        String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }
}
