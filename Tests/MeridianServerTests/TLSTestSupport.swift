import Foundation
import Logging
import MQTTBroker
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import Testing

@testable import MeridianServer

/// A fresh temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func write(_ name: String, _ text: String) throws -> String {
        let file = self.file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Keeps log lines so tests can check what an operator would see.
final class RecordedLogs: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let entries = NIOLockedValueBox<[Entry]>([])

    var logger: Logger {
        var logger = Logger(label: "meridian-test") { _ in Handler(recorder: self) }
        logger.logLevel = .info
        return logger
    }

    func lines(_ message: String) -> [Entry] {
        entries.withLockedValue { $0.filter { $0.message == message } }
    }

    fileprivate func append(_ entry: Entry) {
        entries.withLockedValue { $0.append(entry) }
    }

    private struct Handler: LogHandler {
        let recorder: RecordedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let extra = event.metadata { all.merge(extra) { $1 } }
            recorder.append(Entry(level: event.level, message: "\(event.message)", metadata: all.mapValues { "\($0)" }))
        }
    }
}

/// A configuration for a test server: loopback, every port chosen by the OS, no durability.
func testConfiguration(
    dataDirectory: String,
    configure: (inout MeridianConfiguration) -> Void = { _ in }
) -> MeridianConfiguration {
    var configuration = MeridianConfiguration()
    configuration.network.bind = "127.0.0.1"
    configuration.network.mqttPort = 0
    configuration.network.httpPort = 0
    configuration.network.mqttsPort = 0
    configuration.network.httpsPort = 0
    configuration.dataDirectory = dataDirectory
    configuration.broker.durability = .none
    configuration.broker.sysInterval = 0
    configuration.auth.allowAnonymous = true
    configure(&configuration)
    return configuration
}

/// Runs `meridian serve` with `configuration` until `body` returns.
func withServer(
    _ configuration: MeridianConfiguration,
    logger: Logger = Logger(label: "meridian-test", factory: { _ in SwiftLogNoOpLogHandler() }),
    _ body: @Sendable (MeridianApplication.Endpoints) async throws -> Void
) async throws {
    let (listening, continuation) = AsyncStream.makeStream(of: MeridianApplication.Endpoints.self)
    let app = MeridianApplication(configuration: configuration, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { continuation.finish() }
            try await app.run(gracefulShutdownSignals: []) { endpoints in continuation.yield(endpoints) }
        }
        var iterator = listening.makeAsyncIterator()
        guard let endpoints = await iterator.next() else {
            try await group.next()  // the server failed to start: its error
            throw CancellationError()
        }
        do {
            try await body(endpoints)
        } catch {
            group.cancelAll()
            throw error
        }
        group.cancelAll()
        try? await group.waitForAll()
    }
}

/// A client configuration that trusts exactly the PEM certificate in `file`.
func pinning(_ file: String) throws -> TLSConfiguration {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
    return tls
}

/// An MQTT client for the server's TLS port (or, with `webSocket`, its HTTPS port).
func tlsClient(
    _ endpoints: MeridianApplication.Endpoints,
    trusting tls: TLSConfiguration,
    webSocket: Bool = false,
    version: MQTTProtocolVersion = .v5
) throws -> MQTTClient {
    var configuration = MQTTClient.Configuration(
        host: "127.0.0.1",
        port: try #require(webSocket ? endpoints.httpsPort : endpoints.mqttsPort),
        transport: webSocket ? .webSocket(path: "/mqtt", tls: tls) : .tls(tls),
        protocolVersion: version,
        clientIdentifier: "tls-test-\(UInt32.random(in: 0...UInt32.max))"
    )
    configuration.tlsServerName = "localhost"
    configuration.connectTimeout = .seconds(20)
    return MQTTClient(configuration: configuration)
}

/// Subscribes with `subscriber`, publishes with `publisher`, and expects the message to arrive.
func expectDelivery(
    from publisher: MQTTClient,
    to subscriber: MQTTClient,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let topic = "tls-test/\(UInt32.random(in: 0...UInt32.max))"
    try await subscriber.subscribe(topic, qos: .atLeastOnce)
    try await publisher.publish(topic, payload: ByteBuffer(string: "hello over tls"), qos: .atLeastOnce)
    let message = try await firstMessage(of: subscriber)
    #expect(message?.topic == topic, sourceLocation: sourceLocation)
    #expect(message.map { String(buffer: $0.payload) } == "hello over tls", sourceLocation: sourceLocation)
}

private func firstMessage(of client: MQTTClient) async throws -> PublishPacket? {
    try await withThrowingTaskGroup(of: PublishPacket?.self) { group in
        group.addTask {
            var iterator = client.messages.makeAsyncIterator()
            return await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: .seconds(5))
            return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

/// The answer to an HTTP request: status, content type and body.
struct HTTPAnswer {
    var status: Int
    var contentType: String?
    var body: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }
}

/// Sends a bodiless HTTP/1.1 request to 127.0.0.1:`port` over a plain socket.
///
/// The socket calls block, so they run on a thread of their own: blocking one of the few threads
/// of Swift's cooperative pool would starve the server's own route handlers, which run there too.
func httpRequest(_ method: String, _ path: String, port: Int) async throws -> HTTPAnswer {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try blockingHTTPRequest(method, path, port: port) })
        }
        thread.start()
    }
}

private func blockingHTTPRequest(_ method: String, _ path: String, port: Int) throws -> HTTPAnswer {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw POSIXError(.EIO) }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    let request = Array(
        "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8
    )
    _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        response += chunk[0..<count]
    }
    let text = String(decoding: response, as: UTF8.self)
    let parts = text.components(separatedBy: "\r\n\r\n")
    let head = parts.first ?? ""
    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    let contentType = head.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-type:") }
        .map { String($0.dropFirst("content-type:".count)).trimmingCharacters(in: .whitespaces) }
    return HTTPAnswer(status: status, contentType: contentType, body: parts.dropFirst().joined(separator: "\r\n\r\n"))
}
