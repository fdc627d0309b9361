/// A value in a TOML document, limited to what Meridian's configuration needs: scalars and
/// arrays of scalars.
public enum TOMLValue: Sendable, Hashable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])

    /// The TOML name of this value's type, as used in error messages ("integer", "string", ...).
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .array: "array"
        }
    }

    /// The value written as TOML, such that reading it back gives the same value.
    public var tomlText: String {
        switch self {
        case .string(let string):
            return Self.quoted(string)
        case .integer(let integer):
            return String(integer)
        case .float(let double):
            if double.isNaN { return "nan" }
            if double.isInfinite { return double < 0 ? "-inf" : "inf" }
            let text = String(double)
            // `String(Double)` gives "1.5", "1e+20" or "1e-07", all valid TOML floats.
            return text.contains(".") || text.contains("e") ? text : text + ".0"
        case .boolean(let bool):
            return bool ? "true" : "false"
        case .array(let elements):
            return "[" + elements.map(\.tomlText).joined(separator: ", ") + "]"
        }
    }

    /// `string` as a TOML basic string, with the escapes TOML requires.
    static func quoted(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case "\u{08}": result += "\\b"
            case "\u{0C}": result += "\\f"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
