import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization
import Testing

@testable import MeridianServer

/// A WebSocket client for the live stream on NIO's client upgrader: it sends masked text
/// frames (whole or fragmented) and records every message and the close frame it receives,
/// answering the server's close. ``stopReading()`` makes it a client that stalls: it reads
/// nothing more from the socket until ``startReading()`` (open it with `smallReceiveBuffer` so
/// that the socket fills soon).
final class StreamTestClient: Sendable {
    enum Event: Sendable {
        case text(String)
        case close(code: UInt16, reason: String)
    }

    fileprivate struct State {
        var events: [Event] = []
        /// Text messages already handed out by ``next(within:)``.
        var consumed = 0
        var closed = false
        var subprotocol: String?
    }

    let channel: any Channel
    private let recorder: Recorder

    private init(channel: any Channel, recorder: Recorder) {
        self.channel = channel
        self.recorder = recorder
    }

    /// The subprotocol the server chose, if any.
    var subprotocol: String? { recorder.state.withLock { $0.subprotocol } }

    /// Opens the stream on `port`; fails when the server does not switch protocols.
    static func connect(
        port: Int,
        path: String = StreamEndpoint.path,
        headers: [(String, String)] = [],
        subprotocols: [String] = [],
        smallReceiveBuffer: Bool = false
    ) async throws -> StreamTestClient {
        let recorder = Recorder()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(10))
        if smallReceiveBuffer { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: 4096) }
        let upgraded = try await bootstrap.connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<Void>(
                    maxFrameSize: 1 << 24,
                    upgradePipelineHandler: { channel, response in
                        let chosen = response.headers.first(name: "Sec-WebSocket-Protocol")
                        recorder.state.withLock { $0.subprotocol = chosen }
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(StreamClientHandler(recorder: recorder))
                        }
                    }
                )
                var requestHeaders = HTTPHeaders()
                requestHeaders.add(name: "Host", value: "127.0.0.1:\(port)")
                requestHeaders.add(name: "Content-Length", value: "0")
                for (name, value) in headers { requestHeaders.add(name: name, value: value) }
                if !subprotocols.isEmpty {
                    requestHeaders.add(name: "Sec-WebSocket-Protocol", value: subprotocols.joined(separator: ", "))
                }
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: requestHeaders)
                var configuration = NIOUpgradableHTTPClientPipelineConfiguration(
                    upgradeConfiguration: NIOTypedHTTPClientUpgradeConfiguration<Void>(
                        upgradeRequestHead: head,
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in
                            channel.eventLoop.makeFailedFuture(StreamTestFailure("the server did not switch protocols"))
                        }
                    )
                )
                configuration.leftOverBytesStrategy = .forwardBytes
                let result = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                    configuration: configuration
                )
                return (channel, result)
            }
        }
        let (channel, result) = upgraded
        // A server that never answers the upgrade fails the test instead of hanging it.
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(30)) { channel.close(promise: nil) }
        defer { deadline.cancel() }
        do {
            try await result.get()
        } catch {
            try? await channel.close().get()
            throw error
        }
        return StreamTestClient(channel: channel, recorder: recorder)
    }

    /// Sends `text` in one frame, or in fragments of `fragment` bytes.
    func send(_ text: String, fragment: Int? = nil) async throws {
        let bytes = Array(text.utf8)
        let size = fragment ?? max(bytes.count, 1)
        var offset = 0
        var first = true
        repeat {
            let end = min(bytes.count, offset + size)
            let frame = WebSocketFrame(
                fin: end == bytes.count,
                opcode: first ? .text : .continuation,
                maskKey: .random(),
                data: ByteBuffer(bytes: bytes[offset..<end])
            )
            try await channel.writeAndFlush(frame).get()
            offset = end
            first = false
        } while offset < bytes.count
    }

    /// Sends a frame as given (binary, ping, ...), masked.
    func send(opcode: WebSocketOpcode, _ data: [UInt8], fin: Bool = true) async throws {
        try await channel.writeAndFlush(
            WebSocketFrame(fin: fin, opcode: opcode, maskKey: .random(), data: ByteBuffer(bytes: data))
        ).get()
    }

    /// Sends a JSON object.
    func send(json: [String: Any]) async throws {
        try await send(String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self))
    }

    /// Subscribes and waits for the answer (`subscribed` or `error`).
    @discardableResult
    func subscribe(
        _ id: String,
        devices: Any,
        keys: [String]? = nil,
        topic: String = "telemetry"
    ) async throws -> [String: Any] {
        var message: [String: Any] = ["type": "subscribe", "id": id, "topic": topic, "devices": devices]
        if let keys { message["keys"] = keys }
        try await send(json: message)
        return try await next {
            ($0["type"] as? String == "subscribed" || $0["type"] as? String == "error") && $0["id"] as? String == id
        }
    }

    /// Stops reading from the socket.
    func stopReading() async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: false).get()
    }

    /// Reads from the socket again.
    func startReading() async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: true).get()
        channel.read()
    }

    /// The next message not yet handed out that satisfies `matching` (the ones before it are
    /// passed over), within `timeout`; throws when none comes.
    func next(
        within timeout: Duration = .seconds(20),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ matching: @escaping ([String: Any]) -> Bool = { _ in true }
    ) async throws -> [String: Any] {
        var found: [String: Any]?
        try await serverEventually("a stream message (have \(texts.count) messages)", within: timeout) {
            found = self.recorder.state.withLock { state -> [String: Any]? in
                let texts = state.events.compactMap { event -> String? in
                    if case .text(let text) = event { return text }
                    return nil
                }
                while state.consumed < texts.count {
                    let text = texts[state.consumed]
                    state.consumed += 1
                    if let object = Self.object(text), matching(object) { return object }
                }
                return nil
            }
            return found != nil
        }
        return found ?? [:]
    }

    /// Every text message received so far, as JSON objects.
    var messages: [[String: Any]] { texts.compactMap(Self.object) }

    /// Every text message received so far.
    var texts: [String] {
        recorder.state.withLock { state in
            state.events.compactMap { event in
                if case .text(let text) = event { return text }
                return nil
            }
        }
    }

    /// The close frame the server sent, waiting up to `timeout` for it.
    func closeFrame(within timeout: Duration = .seconds(20)) async throws -> (code: UInt16, reason: String) {
        var result: (UInt16, String)?
        try await serverEventually("a close frame", within: timeout) {
            result = self.recorder.state.withLock { state in
                for case .close(let code, let reason) in state.events { return (code, reason) }
                return nil
            }
            return result != nil
        }
        return result ?? (0, "")
    }

    /// Whether the server closed the TCP connection.
    var isClosed: Bool { recorder.state.withLock { $0.closed } }

    func close() async {
        try? await channel.close().get()
    }

    private static func object(_ text: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    fileprivate final class Recorder: Sendable {
        let state = Mutex(State())
    }

    /// Records what arrives; answers the server's close frame.
    private final class StreamClientHandler: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        let recorder: Recorder
        private var fragments: [UInt8] = []

        init(recorder: Recorder) {
            self.recorder = recorder
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text, .continuation:
                fragments += Array(frame.unmaskedData.readableBytesView)
                if frame.fin {
                    let text = String(decoding: fragments, as: UTF8.self)
                    fragments = []
                    recorder.state.withLock { $0.events.append(.text(text)) }
                }
            case .connectionClose:
                var data = frame.unmaskedData
                let code = data.readInteger(as: UInt16.self) ?? 1005
                let reason = data.readString(length: data.readableBytes) ?? ""
                recorder.state.withLock { $0.events.append(.close(code: code, reason: reason)) }
                var reply = ByteBuffer()
                reply.writeInteger(code)
                let answer = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: reply)
                context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            recorder.state.withLock { $0.closed = true }
            context.fireChannelInactive()
        }
    }
}

struct StreamTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The REST API of a ``ServerFixture`` over raw HTTP/1.1 (one connection per call).
struct StreamTestAPI: Sendable {
    static let adminKey = "mk_stream_test_bootstrap_0123456789"

    let port: Int

    /// Calls the API; returns the status and the body (as JSON when it is an object).
    @discardableResult
    func call(
        _ method: String,
        _ path: String,
        key: String? = adminKey,
        body: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> (status: Int, json: [String: Any], text: String) {
        var lines = ["\(method) \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)", "Connection: close"]
        if let key { lines.append("Authorization: Bearer \(key)") }
        let bytes = body.map { Array($0.utf8) } ?? []
        if body != nil { lines.append("Content-Type: application/json") }
        lines.append("Content-Length: \(bytes.count)")
        let request = lines.joined(separator: "\r\n") + "\r\n\r\n" + (body ?? "")
        let raw = try await ServerHTTPClient.send(port: port, request)
        let response = try ServerHTTPClient.parse(raw)
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any] ?? [:]
        return (response.status, json, response.body)
    }

    /// Calls the API and requires `status`; returns the JSON object.
    @discardableResult
    func expect(
        _ status: Int,
        _ method: String,
        _ path: String,
        key: String? = adminKey,
        body: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [String: Any] {
        let response = try await call(method, path, key: key, body: body)
        #expect(response.status == status, "\(method) \(path): \(response.text)", sourceLocation: sourceLocation)
        return response.json
    }

    /// A new device of the key's tenant and a token credential for it.
    func device(key: String = adminKey) async throws -> (id: String, token: String) {
        let created = try await expect(
            201,
            "POST",
            "/api/v1/devices",
            key: key,
            body: #"{"name": "dev-\#(UUID().uuidString.prefix(8))"}"#
        )
        let id = try #require(created["id"] as? String)
        let credential = try await expect(
            201,
            "POST",
            "/api/v1/devices/\(id)/credentials",
            key: key,
            body: #"{"type": "token"}"#
        )
        return (id, try #require(credential["token"] as? String))
    }

    /// Posts `body` as `device`'s telemetry (its token) and requires 200.
    func post(
        _ device: (id: String, token: String),
        _ body: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        try await expect(
            200,
            "POST",
            "/api/v1/devices/\(device.id)/telemetry",
            key: device.token,
            body: body,
            sourceLocation: sourceLocation
        )
    }

    /// A new API key of `role`: (id, secret).
    func apiKey(_ role: String = "viewer", key: String = adminKey) async throws -> (id: String, key: String) {
        let created = try await expect(
            201,
            "POST",
            "/api/v1/api-keys",
            key: key,
            body: #"{"name": "\#(role)-\#(UUID().uuidString.prefix(6))", "role": "\#(role)"}"#
        )
        return (try #require(created["id"] as? String), try #require(created["key"] as? String))
    }

    /// A new user of the admin key's tenant, logged in: the user name and an access token.
    func user(role: String = "viewer") async throws -> (username: String, token: String) {
        let username = "user-\(UUID().uuidString.prefix(8))"
        try await expect(
            201,
            "POST",
            "/api/v1/users",
            body: #"{"username": "\#(username)", "password": "correct horse battery", "role": "\#(role)"}"#
        )
        return (username, try await login(username))
    }

    /// A new access token for `username`.
    func login(_ username: String) async throws -> String {
        let login = try await expect(
            200,
            "POST",
            "/api/v1/auth/login",
            key: nil,
            body: #"{"username": "\#(username)", "password": "correct horse battery"}"#
        )
        return try #require(login["accessToken"] as? String)
    }

    /// A second tenant owned by a new user: an owner access token for it.
    func secondTenant() async throws -> String {
        let username = "owner-\(UUID().uuidString.prefix(8))"
        try await expect(
            201,
            "POST",
            "/api/v1/users",
            body: #"{"username": "\#(username)", "password": "correct horse battery", "role": "viewer"}"#
        )
        let login = try await expect(
            200,
            "POST",
            "/api/v1/auth/login",
            key: nil,
            body: #"{"username": "\#(username)", "password": "correct horse battery"}"#
        )
        let token = try #require(login["accessToken"] as? String)
        let tenant = try await expect(
            201,
            "POST",
            "/api/v1/tenants",
            key: token,
            body: #"{"name": "tenant-\#(UUID().uuidString.prefix(8))"}"#
        )
        let tenantID = try #require(tenant["id"] as? String)
        let owner = try await expect(
            200,
            "POST",
            "/api/v1/auth/login",
            key: nil,
            body: #"{"username": "\#(username)", "password": "correct horse battery", "tenant": "\#(tenantID)"}"#
        )
        return try #require(owner["accessToken"] as? String)
    }
}

extension ServerFixture {
    /// A server with the bootstrap API key ``StreamTestAPI/adminKey``.
    static func withStream<T>(
        _ configure: (inout MeridianConfiguration) -> Void = { _ in },
        _ body: (ServerFixture, StreamTestAPI) async throws -> T
    ) async throws -> T {
        var configuration = testConfiguration()
        configuration.api.bootstrapAPIKey = StreamTestAPI.adminKey
        configure(&configuration)
        // Many servers start at once in a full test run, with the process busy: be patient.
        return try await with(configuration, startTimeout: .seconds(90)) { server in
            try await body(server, StreamTestAPI(port: server.httpPort))
        }
    }
}
