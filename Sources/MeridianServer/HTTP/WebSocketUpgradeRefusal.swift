import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1

/// Why the HTTP(S) port declines a WebSocket upgrade, as the client is told: a 4xx answer with
/// an `application/problem+json` body (RFC 9457), after which the connection closes.
struct WebSocketUpgradeRefusal: Error, Equatable, Sendable {
    /// 400, or 426 Upgrade Required for a WebSocket version other than 13 (RFC 6455 §4.4).
    let status: HTTPResponse.Status
    /// Stable identifier of the kind of refusal: `urn:meridian:problem:<type>`.
    let type: String
    let title: String
    let detail: String
    /// Extra response headers (`WWW-Authenticate`).
    let headers: [String: String]

    private init(status: HTTPResponse.Status, type: String, title: String, detail: String, headers: [String: String] = [:]) {
        self.status = status
        self.type = "urn:meridian:problem:" + type
        self.title = title
        self.detail = detail
        self.headers = headers
    }

    /// The upgrade asks for a path other than the MQTT path (and the live stream's, when the
    /// server has one).
    static func notTheMQTTPath(_ path: String, streamPath: String? = nil) -> Self {
        Self(
            status: .badRequest,
            type: "websocket-path",
            title: "No WebSocket endpoint on this path",
            detail: streamPath.map {
                "WebSocket upgrades are accepted on \(path) (MQTT over WebSocket) and \($0) (the live stream) only"
            } ?? "WebSocket upgrades are accepted on \(path) only (MQTT over WebSocket)"
        )
    }

    /// The live stream's upgrade carried a bad token: the API's 401 answer.
    static func unauthenticated(_ problem: APIProblem) -> Self {
        Self(
            status: .unauthorized, type: "unauthenticated", title: problem.title, detail: problem.detail,
            headers: problem.headers
        )
    }

    /// The live stream takes no new connections: the server is shutting down.
    static let shuttingDown = Self(
        status: .serviceUnavailable,
        type: "shutting-down",
        title: "Shutting down",
        detail: "the server is shutting down; connect again later"
    )

    /// The upgrade on the MQTT path offers none of the MQTT subprotocols.
    static func missingSubprotocol(path: String, accepted: [String]) -> Self {
        let alternatives = accepted.dropFirst().map { " (or \($0))" }.joined()
        return Self(
            status: .badRequest,
            type: "websocket-subprotocol",
            title: "MQTT subprotocol required",
            detail: "WebSocket upgrade on \(path) needs the subprotocol \(accepted.first ?? "mqtt")\(alternatives)"
                + " in Sec-WebSocket-Protocol"
        )
    }

    /// The client speaks a WebSocket version other than 13.
    static let unsupportedVersion = Self(
        status: .upgradeRequired,
        type: "websocket-version",
        title: "Unsupported WebSocket version",
        detail: "WebSocket upgrade needs Sec-WebSocket-Version: 13"
    )

    /// `Sec-WebSocket-Key` or `Sec-WebSocket-Version` is missing or repeated.
    static let malformedHandshake = Self(
        status: .badRequest,
        type: "websocket-handshake",
        title: "Invalid WebSocket handshake",
        detail: "WebSocket upgrade needs one Sec-WebSocket-Key and one Sec-WebSocket-Version header"
    )

    /// Whether `head` asks for a WebSocket upgrade (among the protocols in its `Upgrade` header).
    static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
        head.headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }
    }

    /// The answer's head and body.
    func response() -> (head: HTTPResponse, body: ByteBuffer) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var body = ByteBuffer(bytes: (try? encoder.encode(self)) ?? Data())
        body.writeString("\n")
        var fields: HTTPFields = [
            .contentType: "application/problem+json",
            .contentLength: "\(body.readableBytes)",
            .date: Self.httpDate(Date()),
        ]
        for (name, value) in headers {
            if let field = HTTPField.Name(name) { fields[field] = value }
        }
        if status == .upgradeRequired {
            // RFC 9110 §15.5.22 and RFC 6455 §4.4: name the protocol and version to use.
            fields[.upgrade] = "websocket"
            fields[.secWebSocketVersion] = "13"
            fields[.connection] = "upgrade, close"
        } else {
            fields[.connection] = "close"
        }
        return (HTTPResponse(status: status, headerFields: fields), body)
    }

    /// `date` as an IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}

extension WebSocketUpgradeRefusal: Encodable {
    enum CodingKeys: String, CodingKey {
        case type, title, status, detail
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try container.encode(title, forKey: .title)
        try container.encode(status.code, forKey: .status)
        try container.encode(detail, forKey: .detail)
    }
}
