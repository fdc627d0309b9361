import Foundation

/// A throwaway certificate authority and a server certificate it signed (by default for
/// `localhost` and 127.0.0.1), made with the `openssl` command in a temporary directory.
struct TestCertificates: Sendable {
    struct OpenSSLError: Error, CustomStringConvertible {
        var description: String
    }

    let directory: URL
    var caCertificate: String { directory.appendingPathComponent("ca.pem").path }
    var serverCertificate: String { directory.appendingPathComponent("server.pem").path }
    var serverKey: String { directory.appendingPathComponent("server.key").path }

    /// The files as a broker's TLS listener wants them.
    var brokerFiles: BrokerOptions.TLSFiles {
        BrokerOptions.TLSFiles(caFile: caCertificate, certificateFile: serverCertificate, keyFile: serverKey)
    }

    /// Makes a CA named `name` and a server certificate signed by it for `subjectAltNames`.
    static func make(
        name: String = "Meridian Test CA",
        subjectAltNames: String = "DNS:localhost,IP:127.0.0.1"
    ) async throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "mqtt-client-certs-\(UUID().uuidString)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let extensions = directory.appendingPathComponent("server.ext")
        try
            "subjectAltName=\(subjectAltNames)\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            .write(to: extensions, atomically: true, encoding: .utf8)
        let commands: [[String]] = [
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=\(name)", "-keyout", "ca.key", "-out", "ca.pem",
            ],
            [
                "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr",
            ],
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
            ],
        ]
        for arguments in commands {
            // The files by absolute path: the child runs in the test's working directory.
            let files: Set<String> = ["ca.key", "ca.pem", "server.key", "server.csr", "server.ext", "server.pem"]
            let absolute = arguments.map { files.contains($0) ? directory.appendingPathComponent($0).path : $0 }
            let status = try await ChildProcess.run("/usr/bin/openssl", absolute)
            guard status == 0 else {
                throw OpenSSLError(description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed")
            }
        }
        return TestCertificates(directory: directory)
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}
