import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A Mosquitto process with its own config in a temporary directory: a plain listener and a
/// WebSocket listener (and optionally a TLS listener) on free 127.0.0.1 ports, persistence off.
final class MosquittoFixture: TestBrokerFixture, @unchecked Sendable {
    struct StartError: Error, CustomStringConvertible {
        var description: String
    }

    let host = "127.0.0.1"
    let mqttPort: Int
    let wsPort: Int
    /// The TLS listener's port, when ``BrokerOptions/tls`` was given.
    let tlsPort: Int?
    /// The secure WebSocket listener's port, when ``BrokerOptions/tlsWebSocket`` was set.
    let tlsWebSocketPort: Int?
    let directory: URL
    private let configFile: URL
    private let lock = NSLock()
    private var _process: ChildProcess?

    private init(mqttPort: Int, wsPort: Int, tlsPort: Int?, tlsWebSocketPort: Int?, directory: URL, configFile: URL) {
        self.mqttPort = mqttPort
        self.wsPort = wsPort
        self.tlsPort = tlsPort
        self.tlsWebSocketPort = tlsWebSocketPort
        self.directory = directory
        self.configFile = configFile
    }

    static var executable: String? {
        let candidates = [
            "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto", "/opt/homebrew/sbin/mosquitto",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts a broker; retried on fresh ports when one was taken between choosing and binding it.
    static func start(_ options: BrokerOptions) async throws -> MosquittoFixture {
        guard executable != nil else {
            throw StartError(description: "mosquitto is not installed (apt-get install mosquitto)")
        }
        var attempt = 0
        while true {
            attempt += 1
            let fixture = try makeFixture(options)
            do {
                try await fixture.launch()
                return fixture
            } catch {
                await fixture.stop()
                // mosquitto exits when a port was taken, sometimes before its log says why:
                // any early exit is retried on fresh ports; a real configuration error fails
                // the same way every time and is reported after the last attempt.
                let exitedEarly = "\(error)".contains("exited with status")
                guard exitedEarly && attempt < 5 else { throw error }
            }
        }
    }

    private static func makeFixture(_ options: BrokerOptions) throws -> MosquittoFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "mqtt-client-tests-\(UUID().uuidString)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let mqttPort = try freePort()
        let wsPort = try freePort()
        let tlsPort = options.tls != nil ? try freePort() : nil
        let tlsWebSocketPort = options.tls != nil && options.tlsWebSocket ? try freePort() : nil
        var lines = [
            "persistence false",
            "per_listener_settings false",
            "allow_anonymous \(options.allowAnonymous)",
            "log_dest file \(directory.appendingPathComponent("mosquitto.log").path)",
            "log_type all",
        ]
        if getuid() == 0 { lines.append("user root") }
        if let size = options.maximumPacketSize { lines.append("max_packet_size \(size)") }
        if let inflight = options.maximumInflightMessages { lines.append("max_inflight_messages \(inflight)") }
        lines += ["listener \(mqttPort) 127.0.0.1", "listener \(wsPort) 127.0.0.1", "protocol websockets"]
        if let tls = options.tls {
            let tlsLines = ["cafile \(tls.caFile)", "certfile \(tls.certificateFile)", "keyfile \(tls.keyFile)"]
            if let tlsPort { lines += ["listener \(tlsPort) 127.0.0.1"] + tlsLines }
            if let tlsWebSocketPort {
                lines += ["listener \(tlsWebSocketPort) 127.0.0.1", "protocol websockets"] + tlsLines
            }
        }
        let configFile = directory.appendingPathComponent("mosquitto.conf")
        try (lines.joined(separator: "\n") + "\n").write(to: configFile, atomically: true, encoding: .utf8)
        return MosquittoFixture(
            mqttPort: mqttPort,
            wsPort: wsPort,
            tlsPort: tlsPort,
            tlsWebSocketPort: tlsWebSocketPort,
            directory: directory,
            configFile: configFile
        )
    }

    /// Starts the process again after ``kill()``.
    func restart() async throws {
        try await launch()
    }

    /// Starts the process with the config and ports and waits until it listens.
    private func launch() async throws {
        let process = try ChildProcess(Self.executable!, ["-c", configFile.path])
        lock.withLock { _process = process }
        let deadline = ContinuousClock.now + .seconds(10)
        var ports = [mqttPort, wsPort]
        if let tlsPort { ports.append(tlsPort) }
        if let tlsWebSocketPort { ports.append(tlsWebSocketPort) }
        for port in ports {
            while !Self.accepts(host: host, port: port) {
                guard process.isRunning else {
                    throw StartError(
                        description: "mosquitto exited with status \(process.terminationStatus); log: \(log)"
                    )
                }
                guard ContinuousClock.now < deadline else {
                    throw StartError(description: "mosquitto did not listen on \(port) within 10 s; log: \(log)")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        // A port may have answered for another process; mosquitto exits at once if it could
        // not bind every listener.
        try await Task.sleep(for: .milliseconds(50))
        guard process.isRunning else {
            throw StartError(description: "mosquitto exited with status \(process.terminationStatus); log: \(log)")
        }
    }

    /// Kills the process (SIGKILL: no goodbye to clients) and waits for it to exit.
    func kill() async {
        guard
            let process = lock.withLock({ () -> ChildProcess? in
                defer { _process = nil }
                return _process
            })
        else { return }
        if process.isRunning {
            sendSignal(SIGKILL, to: process.processIdentifier)
        }
        while process.isRunning {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Kills the broker and removes its directory.
    func stop() async {
        await kill()
        try? FileManager.default.removeItem(at: directory)
    }

    /// The broker's log, for failure messages.
    var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
    }

    deinit {
        if let process = _process, process.isRunning {
            sendSignal(SIGKILL, to: process.processIdentifier)
        }
    }

    // MARK: sockets

    /// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StartError(description: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw StartError(description: "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something accepts TCP connections on `host:port`.
    static func accepts(host: String, port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }
}

/// `kill(2)`, outside the fixture whose `kill()` method would shadow it.
private func sendSignal(_ signal: Int32, to pid: Int32) {
    _ = kill(pid, signal)
}
