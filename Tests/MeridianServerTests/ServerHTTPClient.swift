import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// An HTTP response as read off the socket.
struct ServerHTTPResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: String

    /// The first value of header `name` (case-insensitive).
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// A tiny HTTP/1.1 client on raw NIO sockets: it writes exactly the request the test spells
/// out (a WebSocket upgrade with or without a subprotocol, say), which a general client would
/// not let it do.
enum ServerHTTPClient {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `GET path` with `Connection: close`; reads the whole response.
    static func get(port: Int, path: String, headers: [(String, String)] = []) async throws -> ServerHTTPResponse {
        let request = request(port: port, path: path, headers: headers + [("Connection", "close")])
        let raw = try await exchange(port: port, request: request, untilSwitchingProtocols: false)
        guard !raw.isEmpty else { throw Failure(description: "no response to GET \(path)") }
        return try parse(raw)
    }

    /// A WebSocket upgrade request for `path` offering `subprotocols` (none if empty), over TLS
    /// if `tls` is given (for the HTTPS port, whose certificate names `localhost`). Reads the
    /// response head of a 101 (it switches protocols, so there is no body to wait for), or any
    /// other answer up to the server's close. `nil` when the server closed the connection, or
    /// left it silent for 30 s, without answering.
    static func upgrade(
        port: Int,
        path: String,
        subprotocols: [String],
        version: String = "13",
        tls: TLSConfiguration? = nil
    ) async throws -> ServerHTTPResponse? {
        var headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", version),
        ]
        if !subprotocols.isEmpty { headers.append(("Sec-WebSocket-Protocol", subprotocols.joined(separator: ", "))) }
        let raw = try await exchange(
            port: port,
            request: request(port: port, path: path, headers: headers),
            untilSwitchingProtocols: true,
            tls: tls
        )
        return raw.isEmpty ? nil : try parse(raw)
    }

    /// Sends `request` exactly as given (several pipelined requests, say) and reads everything
    /// up to the server's close.
    static func send(port: Int, _ request: String) async throws -> String {
        try await exchange(port: port, request: request, untilSwitchingProtocols: false)
    }

    private static func request(port: Int, path: String, headers: [(String, String)]) -> String {
        var lines = ["GET \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)"]
        lines += headers.map { "\($0.0): \($0.1)" }
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// Sends `request` and collects the answer: everything until the server closes (empty if it
    /// closed without a word), or only the head of a 101 if `untilSwitchingProtocols`. Gives up
    /// after 30 s: generous, because a loaded CI machine running every suite at once can take
    /// seconds to answer (a login's password check queues behind the others').
    private static func exchange(
        port: Int,
        request: String,
        untilSwitchingProtocols: Bool,
        tls: TLSConfiguration? = nil
    ) async throws -> String {
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: "localhost")
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let timeout = channel.channel.eventLoop.scheduleTask(in: .seconds(30)) { channel.channel.close(promise: nil) }
        defer { timeout.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var received = ""
            do {
                for try await chunk in inbound {
                    received += String(buffer: chunk)
                    if untilSwitchingProtocols, received.hasPrefix("HTTP/1.1 101 "), received.contains("\r\n\r\n") {
                        break
                    }
                }
            } catch let error as NIOSSLError where error == .uncleanShutdown && !received.isEmpty {
                // The answer is complete; the server closed without close_notify.
            }
            return received
        }
    }

    static func parse(_ raw: String) throws -> ServerHTTPResponse {
        guard let headEnd = raw.range(of: "\r\n\r\n") else { throw Failure(description: "incomplete response: \(raw)") }
        let headLines = raw[..<headEnd.lowerBound].components(separatedBy: "\r\n")
        let statusParts = headLines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw Failure(description: "bad status line: \(headLines[0])")
        }
        let headers = headLines.dropFirst().compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var body = String(raw[headEnd.upperBound...])
        let chunked = headers.contains {
            $0.name.lowercased() == "transfer-encoding" && $0.value.lowercased() == "chunked"
        }
        if chunked { body = try dechunk(body) }
        return ServerHTTPResponse(status: status, headers: headers, body: body)
    }

    private static func dechunk(_ encoded: String) throws -> String {
        var bytes = Array(encoded.utf8)[...]
        var body: [UInt8] = []
        while true {
            guard let lineEnd = bytes.firstIndex(of: UInt8(ascii: "\r")) else {
                throw Failure(description: "bad chunk")
            }
            let sizeText = String(decoding: bytes[..<lineEnd], as: UTF8.self).split(separator: ";")[0]
            guard let size = Int(sizeText, radix: 16) else { throw Failure(description: "bad chunk size \(sizeText)") }
            bytes = bytes[(lineEnd + 2)...]
            if size == 0 { return String(decoding: body, as: UTF8.self) }
            body += bytes.prefix(size)
            bytes = bytes.dropFirst(size + 2)
        }
    }

    /// Prometheus text-format samples: series (metric name with its labels) → value.
    static func prometheusSamples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }
}
