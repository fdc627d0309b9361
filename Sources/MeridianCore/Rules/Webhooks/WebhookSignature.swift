import Crypto
import Foundation

/// The `X-Meridian-Signature` header of a webhook (Stripe's scheme):
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
///
/// A receiver recomputes the HMAC over the timestamp, a dot and the raw body it received, compares
/// it in constant time, and rejects a timestamp far from its clock (``verify(header:body:secret:now:tolerance:)``
/// does all three; it has no dependency but swift-crypto and can be copied). Signing the time
/// stops a captured request from being replayed later.
public enum WebhookSignature {
    /// The signature header's name.
    public static let headerName = "X-Meridian-Signature"
    /// The delivery id header's name (``WebhookRequest/deliveryID``).
    public static let deliveryHeaderName = "X-Meridian-Delivery"
    /// How far a signature's time may be from the receiver's clock by default: 5 minutes.
    public static let defaultTolerance: TimeInterval = 300

    /// The header value for `body` signed with `secret` at `timestamp` (seconds since 1970).
    public static func sign(body: some DataProtocol, secret: String, timestamp: Int64) -> String {
        "t=\(timestamp),v1=\(hmac(body: body, secret: secret, timestamp: timestamp))"
    }

    /// The header value for `body` signed with `secret` at `timestamp` (seconds since 1970).
    public static func sign(body: String, secret: String, timestamp: Int64) -> String {
        sign(body: Array(body.utf8), secret: secret, timestamp: timestamp)
    }

    /// Whether `header` is a valid signature of `body` (the raw bytes received) with `secret`,
    /// made within `tolerance` seconds of `now`. Any `v1=` entry may match (several are allowed,
    /// for rotating secrets); unknown entries are ignored; a malformed header never verifies.
    public static func verify(
        header: String, body: some DataProtocol, secret: String, now: Date = Date(), tolerance: TimeInterval = defaultTolerance
    ) -> Bool {
        var timestamp: Int64?
        var signatures: [Substring] = []
        for part in header.split(separator: ",") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            switch pair[0] {
            case "t": timestamp = Int64(pair[1])
            case "v1": signatures.append(pair[1])
            default: continue
            }
        }
        guard let timestamp, !signatures.isEmpty else { return false }
        guard abs(now.timeIntervalSince1970 - Double(timestamp)) <= tolerance else { return false }
        let expected = Array(hmac(body: body, secret: secret, timestamp: timestamp).utf8)
        var matched = false
        for signature in signatures {
            // Compares every candidate in full: no early exit on the first difference.
            let candidate = Array(signature.lowercased().utf8)
            guard candidate.count == expected.count else { continue }
            var difference: UInt8 = 0
            for index in expected.indices { difference |= expected[index] ^ candidate[index] }
            if difference == 0 { matched = true }
        }
        return matched
    }

    /// Whether `header` is a valid signature of `body` with `secret` (see the byte version).
    public static func verify(
        header: String, body: String, secret: String, now: Date = Date(), tolerance: TimeInterval = defaultTolerance
    ) -> Bool {
        verify(header: header, body: Array(body.utf8), secret: secret, now: now, tolerance: tolerance)
    }

    /// Lower-case hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed by `secret`.
    static func hmac(body: some DataProtocol, secret: String, timestamp: Int64) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8)))
        mac.update(data: Array("\(timestamp).".utf8))
        mac.update(data: Array(body))
        return Array(mac.finalize()).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
