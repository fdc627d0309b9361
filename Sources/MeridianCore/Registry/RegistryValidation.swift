import Foundation

/// Input checks shared by the registry's calls and bulk import. Each returns the problem (field,
/// reason) or nil.
enum RegistryValidation {
    static let maxNameLength = 128
    static let maxLabels = 64
    static let maxLabelKeyLength = 128
    static let maxLabelValueLength = 256
    static let maxMetadataBytes = 64 * 1024
    static let maxUsernameLength = 128
    static let maxPasswordLength = 1024
    static let minPasswordLength = 8
    static let minTokenLength = 16
    static let maxTokenLength = 256

    struct Problem: Error, Hashable {
        var field: String
        var reason: String

        var error: RegistryError { .invalid(field, reason) }
    }

    static func hasControlCharacters(_ value: String) -> Bool {
        value.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// A display name (device, profile, tenant, API key).
    static func name(_ value: String, field: String = "name") -> Problem? {
        if value.trimmingCharacters(in: .whitespaces).isEmpty { return Problem(field: field, reason: "must not be empty") }
        if value.count > maxNameLength { return Problem(field: field, reason: "must be at most \(maxNameLength) characters") }
        if hasControlCharacters(value) { return Problem(field: field, reason: "must not contain control characters") }
        return nil
    }

    static func deviceID(_ value: String) -> Problem? {
        MeridianID.isValidDeviceID(value)
            ? nil
            : Problem(field: "id", reason: "must be 1-64 characters of letters, digits, '-', '_', '.' and ':'")
    }

    private static func isLabelKeyByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            || byte == UInt8(ascii: "/")
    }

    static func labels(_ labels: [String: String]) -> Problem? {
        if labels.count > maxLabels { return Problem(field: "labels", reason: "at most \(maxLabels) labels") }
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            if key.isEmpty || key.utf8.count > maxLabelKeyLength || !key.utf8.allSatisfy(isLabelKeyByte) {
                return Problem(
                    field: "labels",
                    reason: "label key '\(key.prefix(40))' must be 1-\(maxLabelKeyLength) characters of letters, digits, '.', '_', '-' and '/'"
                )
            }
            if value.isEmpty || value.count > maxLabelValueLength || hasControlCharacters(value) {
                return Problem(field: "labels", reason: "label '\(key)' needs a value of 1-\(maxLabelValueLength) characters without control characters")
            }
        }
        return nil
    }

    static func metadata(_ metadata: JSONValue?) -> Problem? {
        guard let metadata else { return nil }
        guard let encoded = try? JSONEncoder().encode(metadata), encoded.count <= maxMetadataBytes else {
            return Problem(field: "metadata", reason: "must be JSON of at most \(maxMetadataBytes) bytes")
        }
        return nil
    }

    /// The checks on a device draft that need no storage.
    static func draft(_ draft: DeviceDraft) -> [Problem] {
        var problems: [Problem] = []
        if let problem = name(draft.name) { problems.append(problem) }
        if let id = draft.id, let problem = deviceID(id) { problems.append(problem) }
        if let problem = labels(draft.labels) { problems.append(problem) }
        if let problem = metadata(draft.metadata) { problems.append(problem) }
        return problems
    }

    /// A login or device user name: 1-128 characters, no whitespace or control characters.
    static func username(_ value: String) -> Problem? {
        if value.isEmpty || value.count > maxUsernameLength
            || value.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        {
            return Problem(field: "username", reason: "must be 1-\(maxUsernameLength) characters without spaces or control characters")
        }
        return nil
    }

    static func password(_ value: String) -> Problem? {
        if value.count < minPasswordLength || value.count > maxPasswordLength {
            return Problem(field: "password", reason: "must be \(minPasswordLength)-\(maxPasswordLength) characters")
        }
        return nil
    }

    static func token(_ value: String) -> Problem? {
        if value.count < minTokenLength || value.count > maxTokenLength
            || value.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        {
            return Problem(field: "token", reason: "must be \(minTokenLength)-\(maxTokenLength) characters without spaces or control characters")
        }
        return nil
    }

    static func expiry(_ date: Date?, now: Date) -> Problem? {
        if let date, date <= now { return Problem(field: "expiresAt", reason: "must be in the future") }
        return nil
    }
}
