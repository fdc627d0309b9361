import Foundation

/// A JSON value written as Swift literals, for the OpenAPI document.
indirect enum OpenAPIValue: Sendable, Hashable, Encodable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    case string(String)
    case integer(Int)
    case bool(Bool)
    case array([OpenAPIValue])
    case object([String: OpenAPIValue])

    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .integer(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: OpenAPIValue...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, OpenAPIValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    subscript(key: String) -> OpenAPIValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The object's entries (empty for anything else).
    var entries: [String: OpenAPIValue] {
        if case .object(let object) = self { return object }
        return [:]
    }

    /// This object with `other`'s entries added (replacing same keys).
    func merging(_ other: OpenAPIValue) -> OpenAPIValue {
        .object(entries.merging(other.entries) { _, new in new })
    }
}
