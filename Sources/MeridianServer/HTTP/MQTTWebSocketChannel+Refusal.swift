import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

extension MQTTWebSocketChannel {
    /// The subprotocol to answer a WebSocket upgrade request with, or why it is refused.
    ///
    /// Checks the path first, then the handshake headers NIO's upgrader insists on (so that a
    /// request NIO rejects before asking us gets its reason too), then the subprotocol.
    /// `streamPath` is the live stream's path, named in the refusal of other paths.
    static func negotiate(
        _ head: HTTPRequestHead, path: String, streamPath: String? = nil
    ) -> Result<String, WebSocketUpgradeRefusal> {
        let requestPath = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first
        guard requestPath.map(String.init) == path else {
            return .failure(.notTheMQTTPath(path, streamPath: streamPath))
        }
        if let refusal = handshakeRefusal(head) { return .failure(refusal) }
        let offered = head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }
        guard let chosen = subprotocols.first(where: { offered.contains($0) }) else {
            return .failure(.missingSubprotocol(path: path, accepted: subprotocols))
        }
        return .success(chosen)
    }

    /// What is wrong with the handshake headers NIO's upgrader insists on, if anything.
    static func handshakeRefusal(_ head: HTTPRequestHead) -> WebSocketUpgradeRefusal? {
        let versions = head.headers[canonicalForm: "Sec-WebSocket-Version"]
        guard versions.count == 1, head.headers[canonicalForm: "Sec-WebSocket-Key"].count == 1 else {
            return .malformedHandshake
        }
        guard versions[0] == "13" else { return .unsupportedVersion }
        return nil
    }

    /// Tells the client why its upgrade was refused, then closes the connection.
    func answer(
        _ refusal: WebSocketUpgradeRefusal,
        on asyncChannel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>,
        logger: Logger
    ) async {
        logger.debug("WebSocket upgrade refused", metadata: ["ws.refusal": "\(refusal.type)"])
        let (head, body) = refusal.response()
        do {
            try await asyncChannel.executeThenClose { _, outbound in
                try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
            }
        } catch {
            logger.trace("Refusal of a WebSocket upgrade not sent", metadata: ["error": "\(error)"])
        }
    }
}
