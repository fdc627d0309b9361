import Foundation

/// One webhook to deliver: an HTTP POST of ``body`` (JSON text) to ``url``, signed with
/// ``secret`` when there is one (``WebhookSignature``), tried at most ``maxAttempts`` times,
/// each attempt given ``timeoutMs``. The context fields (tenant, rule, device, firing) are what
/// the dead-letter list and the firing records show; they are not sent.
///
/// ``description`` never shows the secret or the body, so a request may be interpolated into a
/// log line or an error.
public struct WebhookRequest: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Largest ``body`` in bytes (1 MiB).
    public static let maximumBodyBytes = 1 << 20
    /// Longest ``url`` in bytes.
    public static let maximumURLBytes = 2048
    /// Longest ``secret`` in bytes.
    public static let maximumSecretBytes = 512
    /// Allowed ``timeoutMs`` of one attempt: 1 ms to 60 s.
    public static let timeoutRange: ClosedRange<Int64> = 1...60_000
    /// Allowed ``maxAttempts``: 1 (no retry) to 20.
    public static let attemptsRange: ClosedRange<Int> = 1...20
    /// ``timeoutMs`` when none is given.
    public static let defaultTimeoutMs: Int64 = 5000
    /// ``maxAttempts`` when none is given: the first attempt and 5 retries.
    public static let defaultMaxAttempts = 6

    /// Where to POST: an `http` or `https` URL with a host.
    public var url: String
    /// The JSON text sent as the body (`Content-Type: application/json`).
    public var body: String
    /// The HMAC-SHA256 key of the `X-Meridian-Signature` header; nil: no signature is sent.
    public var secret: String?
    /// How long one attempt may take, connecting included.
    public var timeoutMs: Int64
    /// Attempts in all; 1 means no retry.
    public var maxAttempts: Int
    /// The tenant whose rule sent it.
    public var tenantID: String
    /// The rule whose action it is.
    public var ruleID: String?
    /// The device the firing was about.
    public var deviceID: String?
    /// The firing that triggered the action.
    public var firingID: String?
    /// Sent as `X-Meridian-Delivery`: the same on every attempt and replay of this request, so a
    /// receiver can drop duplicates (delivery is at least once).
    public var deliveryID: String

    /// A request; `deliveryID` defaults to a new `whd_...` id.
    public init(
        url: String, body: String, secret: String? = nil, timeoutMs: Int64 = WebhookRequest.defaultTimeoutMs,
        maxAttempts: Int = WebhookRequest.defaultMaxAttempts, tenantID: String, ruleID: String? = nil, deviceID: String? = nil,
        firingID: String? = nil, deliveryID: String = "whd_" + MeridianID.generate()
    ) {
        self.url = url
        self.body = body
        self.secret = secret
        self.timeoutMs = timeoutMs
        self.maxAttempts = maxAttempts
        self.tenantID = tenantID
        self.ruleID = ruleID
        self.deviceID = deviceID
        self.firingID = firingID
        self.deliveryID = deliveryID
    }

    /// Checks every field; the error names the first bad one (`url`, `timeoutMs`, `maxAttempts`,
    /// `secret`, `body`).
    ///
    /// - Throws: ``WebhookError`` with code ``WebhookError/Code/invalid``.
    public func validate() throws {
        try Self.validateURL(url)
        guard Self.timeoutRange.contains(timeoutMs) else {
            throw WebhookError.invalid(
                "the timeout must be from \(Self.timeoutRange.lowerBound) to \(Self.timeoutRange.upperBound) ms", field: "timeoutMs"
            )
        }
        guard Self.attemptsRange.contains(maxAttempts) else {
            throw WebhookError.invalid(
                "maxAttempts must be from \(Self.attemptsRange.lowerBound) to \(Self.attemptsRange.upperBound)", field: "maxAttempts"
            )
        }
        if let secret {
            guard !secret.isEmpty, secret.utf8.count <= Self.maximumSecretBytes else {
                throw WebhookError.invalid("the secret must be 1 to \(Self.maximumSecretBytes) bytes (or absent: unsigned)", field: "secret")
            }
        }
        guard body.utf8.count <= Self.maximumBodyBytes else {
            throw WebhookError.invalid("the body may be at most \(Self.maximumBodyBytes) bytes", field: "body")
        }
        guard (try? JSONSerialization.jsonObject(with: Data(body.utf8), options: [.fragmentsAllowed])) != nil else {
            throw WebhookError.invalid("the body must be JSON text", field: "body")
        }
    }

    /// Checks a webhook URL: `http://` or `https://`, a host, at most ``maximumURLBytes``, no
    /// spaces or control characters, no fragment.
    ///
    /// - Throws: ``WebhookError`` naming the field `url`; the message never repeats the URL
    ///   (it may carry credentials).
    public static func validateURL(_ url: String) throws {
        guard !url.isEmpty else { throw WebhookError.invalid("the webhook URL is empty", field: "url") }
        guard url.utf8.count <= maximumURLBytes else {
            throw WebhookError.invalid("the webhook URL may be at most \(maximumURLBytes) bytes", field: "url")
        }
        guard !url.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
            throw WebhookError.invalid("the webhook URL may not contain spaces or control characters", field: "url")
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw WebhookError.invalid("the webhook URL is not a valid URL (expected http://host/path or https://host/path)", field: "url")
        }
        guard scheme == "http" || scheme == "https" else {
            throw WebhookError.invalid("the webhook URL must start with http:// or https://", field: "url")
        }
        guard let host = components.host, !host.isEmpty else {
            throw WebhookError.invalid("the webhook URL has no host", field: "url")
        }
        guard components.fragment == nil else {
            throw WebhookError.invalid("the webhook URL may not have a fragment (#...)", field: "url")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw WebhookError.invalid("the webhook URL's port must be from 1 to 65535", field: "url")
        }
    }

    /// The URL without credentials, query or path: `https://hooks.example.com:8443`, for logs.
    public var redactedURL: String {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else {
            return "<invalid url>"
        }
        return "\(scheme)://\(host)" + (components.port.map { ":\($0)" } ?? "")
    }

    public var description: String {
        "webhook \(deliveryID) to \(redactedURL) (tenant \(tenantID)"
            + (ruleID.map { ", rule \($0)" } ?? "") + (deviceID.map { ", device \($0)" } ?? "") + ")"
    }
}
