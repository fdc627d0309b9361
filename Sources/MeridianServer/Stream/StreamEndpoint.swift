import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// `GET /api/v1/stream`, the live stream, as the HTTP port's child channel
/// (``MQTTWebSocketChannel``) serves it: the upgrade's checks and authentication, and the
/// pipeline set-up after it.
///
/// A token may come with the upgrade (`Authorization: Bearer`, or a `token` query parameter for
/// browsers, which cannot set headers on a WebSocket): a bad one refuses the upgrade with 401
/// problem+json. Without one the upgrade succeeds and the first message must be
/// `{"type":"auth","token":...}` within 10 s.
public struct StreamEndpoint: Sendable {
    /// The path of the live stream.
    public static let path = "/api/v1/stream"
    /// The subprotocol echoed when the client offers it (none is required).
    public static let subprotocol = "meridian.v1"

    public let hub: StreamHub

    public init(hub: StreamHub) {
        self.hub = hub
    }

    /// How the upgrade request was decided, kept for the channel from the upgrader's checks
    /// (which run first) to its pipeline set-up or its refusal answer.
    final class Decision: Sendable {
        enum Outcome: Sendable {
            case accepted(StreamSession.Principal?)
            case refused(WebSocketUpgradeRefusal)
        }

        private let box = NIOLockedValueBox<Outcome?>(nil)

        var outcome: Outcome? {
            get { box.withLockedValue { $0 } }
            set { box.withLockedValue { $0 = newValue } }
        }

        var refusal: WebSocketUpgradeRefusal? {
            if case .refused(let refusal) = outcome { return refusal }
            return nil
        }
    }

    /// The upgrader for the stream's path: checks the token (if any), then puts a
    /// ``StreamChannelHandler`` on the upgraded channel.
    func upgrader<Value: Sendable>(
        decision: Decision,
        logger: Logger,
        upgraded: @escaping @Sendable (any Channel) throws -> Value
    ) -> NIOTypedWebSocketServerUpgrader<Value> {
        let hub = self.hub
        return NIOTypedWebSocketServerUpgrader<Value>(
            maxFrameSize: StreamChannelHandler.maximumMessageSize,
            shouldUpgrade: { channel, head in
                Self.shouldUpgrade(channel: channel, head: head, hub: hub, decision: decision)
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard case .accepted(let principal) = decision.outcome else {
                        throw ChannelError.inappropriateOperationForState
                    }
                    let handler = StreamChannelHandler(
                        hub: hub,
                        principal: principal,
                        remoteAddress: channel.remoteAddress?.ipAddress,
                        logger: logger
                    )
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return try upgraded(channel)
                }
            }
        )
    }

    private static func shouldUpgrade(
        channel: any Channel,
        head: HTTPRequestHead,
        hub: StreamHub,
        decision: Decision
    ) -> EventLoopFuture<HTTPHeaders?> {
        func refuse(_ refusal: WebSocketUpgradeRefusal) -> EventLoopFuture<HTTPHeaders?> {
            decision.outcome = .refused(refusal)
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        guard hub.isAccepting else { return refuse(.shuttingDown) }
        var headers = HTTPHeaders()
        let offered = head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { $0.lowercased() }
        if offered.contains(subprotocol) { headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol) }
        let token: String?
        do {
            token = try Self.token(of: head)
        } catch let problem as APIProblem {
            return refuse(.unauthenticated(problem))
        } catch {
            return refuse(.unauthenticated(APIProblem.unauthenticated("send a token", tokenGiven: true)))
        }
        guard let token else {
            decision.outcome = .accepted(nil)
            return channel.eventLoop.makeSucceededFuture(headers)
        }
        let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
        let services = hub.services
        let remoteAddress = channel.remoteAddress?.ipAddress
        Task { [headers] in
            do {
                let identity = try await services.authenticate(token: token, remoteAddress: remoteAddress)
                decision.outcome = .accepted(
                    StreamSession.Principal(caller: identity.caller, expiresAt: identity.expiresAt)
                )
                promise.succeed(headers)
            } catch let problem as APIProblem {
                decision.outcome = .refused(.unauthenticated(problem))
                promise.succeed(nil)
            } catch {
                hub.logger.error("stream authentication failed", metadata: ["error": "\(error)"])
                decision.outcome = .refused(
                    .unauthenticated(APIProblem.unauthenticated("the token could not be checked", tokenGiven: true))
                )
                promise.succeed(nil)
            }
        }
        return promise.futureResult
    }

    /// The token of the upgrade request: its `Authorization: Bearer` header, else its `token`
    /// query parameter; nil when it has neither. 401 problems for a malformed one.
    static func token(of head: HTTPRequestHead) throws -> String? {
        let authorization = head.headers[canonicalForm: "Authorization"].map(String.init)
        if !authorization.isEmpty {
            return try APIServices.bearerToken(authorization)
        }
        guard let query = head.uri.firstIndex(of: "?") else { return nil }
        let tokens = head.uri[head.uri.index(after: query)...].split(separator: "&").compactMap { pair -> Substring? in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return parts[0] == "token" ? (parts.count == 2 ? parts[1] : "") : nil
        }
        guard !tokens.isEmpty else { return nil }
        guard tokens.count == 1, let token = tokens[0].removingPercentEncoding, !token.isEmpty else {
            throw APIProblem.unauthenticated(
                "send one non-empty, percent-encoded token query parameter",
                tokenGiven: true
            )
        }
        return token
    }

    /// A plain `GET /api/v1/stream` (no upgrade) is told to upgrade: 426 problem+json.
    static func addRoutes(to router: Router<MeridianRequestContext>) {
        router.get(RouterPath(path)) { _, _ -> Response in
            throw APIProblem(
                .upgradeRequired,
                type: "websocket-required",
                title: "WebSocket required",
                detail:
                    "\(path) is a WebSocket endpoint: connect with a WebSocket client (see docs/api.md, Live stream)",
                headers: ["Upgrade": "websocket", "Connection": "Upgrade"]
            )
        }
    }
}
