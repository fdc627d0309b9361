import ArgumentParser
import Foundation

/// Options every admin command shares: which server, which API key, and the output format.
struct AdminOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The server's HTTP base URL (default: MERIDIAN_SERVER, else http://127.0.0.1:8080).",
            valueName: "url"
        )
    )
    var server: String?

    @Option(
        name: .customLong("api-key"),
        help: ArgumentHelp("The API key to authenticate with (default: MERIDIAN_API_KEY).", valueName: "key")
    )
    var apiKey: String?

    @Flag(help: "Print the server's JSON instead of a table.")
    var json = false

    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let address = server ?? environment["MERIDIAN_SERVER"] ?? "http://127.0.0.1:8080"
        guard let url = URL(string: address), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--server: '\(address)' is not an http(s) URL, e.g. http://127.0.0.1:8080")
        }
        guard let key = apiKey ?? environment["MERIDIAN_API_KEY"], !key.isEmpty else {
            throw ValidationError("no API key: pass --api-key or set MERIDIAN_API_KEY (create one with `meridian apikey create`)")
        }
        return APIClient(server: url, apiKey: key)
    }

    /// Prints `value` as JSON (with `--json`) or through `table`.
    func output(_ value: Any?, table: (Any?) -> String) {
        if json {
            print(Output.json(value))
        } else {
            print(table(value), terminator: "")
        }
    }
}

/// Formatting of API answers for the terminal.
enum Output {
    static func json(_ value: Any?) -> String {
        guard let value, JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys])
        else { return value.map { "\($0)" } ?? "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A plain-text table: a header row, then one row per item, columns padded.
    static func table(_ rows: [[String]], header: [String]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ") + "\n"
        }
        return line(header) + rows.map(line).joined()
    }

    /// `key: value` lines for one object, in the given order, then any other keys.
    static func record(_ object: [String: Any], order: [String]) -> String {
        let keys = order.filter { object[$0] != nil } + object.keys.filter { !order.contains($0) }.sorted()
        let width = keys.map(\.count).max() ?? 0
        return keys.map { key in
            key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + cell(object[key])
        }.joined(separator: "\n") + "\n"
    }

    /// One value as a table cell: labels as `k=v,k2=v2`, null as `-`.
    static func cell(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: return "-"
        case let string as String: return string
        case let dictionary as [String: Any]:
            if dictionary.isEmpty { return "-" }
            return dictionary.keys.sorted().map { "\($0)=\(cell(dictionary[$0]))" }.joined(separator: ",")
        case let array as [Any]: return array.map { cell($0) }.joined(separator: ",")
        case let number as NSNumber:
            // JSON booleans come back as a distinct NSNumber subclass.
            if String(describing: type(of: number)).contains("Boolean") { return number.boolValue ? "true" : "false" }
            return number.stringValue
        default: return "\(value!)"
        }
    }
}

/// `key=value` from the command line.
func parseLabel(_ text: String, option: String) throws -> (String, String) {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
        throw ValidationError("\(option) '\(text)': expected key=value")
    }
    return (String(text[..<equals]), String(text[text.index(after: equals)...]))
}
