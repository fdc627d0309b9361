import Foundation

/// The JSON text both registry stores keep in their JSON columns (labels, metadata, settings):
/// sorted keys, so equal values store equal text.
enum JSONColumn {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// The decoded column, or `value` when it is NULL or does not decode.
    static func decode<T: Decodable>(_ type: T.Type, _ text: String?, default value: T) -> T {
        guard let text, let decoded = try? JSONDecoder().decode(T.self, from: Data(text.utf8)) else { return value }
        return decoded
    }
}
