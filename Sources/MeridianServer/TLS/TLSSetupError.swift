/// Why the TLS certificate, key or client CA could not be loaded (at start-up, which then
/// stops, or on reload, which then keeps the previous ones).
///
/// Its `description` names the configuration key first:
/// `tls.private_key: /etc/meridian/key.pem does not exist`.
public struct TLSSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of problem.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: Sendable, Hashable {
            case missingSetting, missingFile, unreadableFile, invalidCertificate, invalidPrivateKey, keyMismatch
            case invalidClientCA, generationFailed, disabled
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A key that another key's value needs is not set (`tls.private_key` with
        /// `tls.certificate`, `tls.client_ca` with `tls.client_auth`).
        public static let missingSetting = Code(.missingSetting)
        /// A configured file does not exist.
        public static let missingFile = Code(.missingFile)
        /// A file exists but cannot be read.
        public static let unreadableFile = Code(.unreadableFile)
        /// The certificate file holds no usable PEM certificate.
        public static let invalidCertificate = Code(.invalidCertificate)
        /// The private key file holds no usable, unencrypted PEM private key.
        public static let invalidPrivateKey = Code(.invalidPrivateKey)
        /// The private key is not the key of the certificate.
        public static let keyMismatch = Code(.keyMismatch)
        /// The client CA file holds no usable PEM certificate.
        public static let invalidClientCA = Code(.invalidClientCA)
        /// The self-signed certificate could not be made or stored.
        public static let generationFailed = Code(.generationFailed)
        /// TLS is switched off (`tls.enabled = false`): there is nothing to reload.
        public static let disabled = Code(.disabled)

        public var description: String {
            switch base {
            case .missingSetting: "missing setting"
            case .missingFile: "missing file"
            case .unreadableFile: "unreadable file"
            case .invalidCertificate: "invalid certificate"
            case .invalidPrivateKey: "invalid private key"
            case .keyMismatch: "key does not match certificate"
            case .invalidClientCA: "invalid client CA"
            case .generationFailed: "self-signed certificate not generated"
            case .disabled: "TLS disabled"
            }
        }
    }

    /// The kind of problem.
    public var code: Code
    /// The configuration key concerned (`tls.certificate`, `tls.private_key`, `tls.client_ca`,
    /// `tls.enabled`).
    public var key: String
    /// The file concerned, if any.
    public var path: String?
    /// What is wrong, without the key: `/x/key.pem does not exist`.
    public var problem: String
    /// Where in Meridian's source the error was raised, for debugging.
    public var file: String
    public var line: Int

    /// `key: problem`.
    public var description: String { "\(key): \(problem)" }

    private init(code: Code, key: String, path: String?, problem: String, file: String, line: Int) {
        self.code = code
        self.key = key
        self.path = path
        self.problem = problem
        self.file = file
        self.line = line
    }

    static func missingSetting(key: String, reason: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .missingSetting, key: key, path: nil, problem: reason, file: file, line: line)
    }

    static func missingFile(key: String, path: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .missingFile, key: key, path: path, problem: "\(path) does not exist", file: file, line: line)
    }

    static func unreadableFile(
        key: String,
        path: String,
        reason: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(
            code: .unreadableFile,
            key: key,
            path: path,
            problem: "\(path) cannot be read: \(reason)",
            file: file,
            line: line
        )
    }

    static func invalidCertificate(
        key: String,
        path: String,
        reason: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(code: .invalidCertificate, key: key, path: path, problem: "\(path): \(reason)", file: file, line: line)
    }

    static func invalidPrivateKey(
        key: String,
        path: String,
        reason: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(code: .invalidPrivateKey, key: key, path: path, problem: "\(path): \(reason)", file: file, line: line)
    }

    static func keyMismatch(
        key: String,
        path: String,
        certificatePath: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(
            code: .keyMismatch,
            key: key,
            path: path,
            problem: "\(path) is not the private key of the certificate in \(certificatePath)",
            file: file,
            line: line
        )
    }

    static func invalidClientCA(
        key: String,
        path: String,
        reason: String,
        file: String = #fileID,
        line: Int = #line
    ) -> Self {
        .init(code: .invalidClientCA, key: key, path: path, problem: "\(path): \(reason)", file: file, line: line)
    }

    static func generationFailed(path: String, reason: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(
            code: .generationFailed,
            key: "tls.certificate",
            path: path,
            problem: "cannot store a self-signed certificate in \(path): \(reason)",
            file: file,
            line: line
        )
    }

    static func disabled(file: String = #fileID, line: Int = #line) -> Self {
        .init(
            code: .disabled,
            key: "tls.enabled",
            path: nil,
            problem: "TLS is disabled; there is nothing to reload",
            file: file,
            line: line
        )
    }
}
