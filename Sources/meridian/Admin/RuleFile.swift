import Foundation
import MeridianCore
import Yams

/// A rules file for `meridian rule apply` and `meridian rule test`: YAML (or JSON, which YAML
/// reads too) whose documents are each a list of rules, `{rules: [...]}`, or one rule; the
/// documents of a file (`---`) are concatenated.
///
/// Scalars are read with YAML 1.2's core schema, not YAML 1.1's: only `true`/`false` are
/// booleans (`yes`, `no`, `on`, `off` stay strings, also as keys), only decimal numbers are
/// numbers (`5m`, `1:30`, `0x1F` and dates stay strings), and `null`, `~` or nothing is null.
/// Keys must be strings; `<<` merges a mapping (or a list of them) as in YAML 1.1; next to
/// `rules:`, `x-...` keys are ignored (a place for anchors).
///
/// Every node's line is kept, so that an error the server reports for
/// `rules[2].condition.threshold.op` is shown at its line: ``describe(field:message:)``.
struct RuleFile {
    /// One rule of the file: its JSON, its name (when it has one), and the line of each of its
    /// fields, by the field's path relative to the rule (`""` for the rule itself,
    /// `condition.threshold.op`, `actions[0].url`).
    struct Entry {
        var json: JSONValue
        var name: String?
        var lines: [String: Int]
    }

    /// A file that cannot be used: its message names the file (and line when known).
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The path as the user gave it.
    let path: String
    var entries: [Entry]

    /// The JSON `rules` array to send.
    var rulesJSON: JSONValue { .array(entries.map(\.json)) }

    /// Reads and converts `path`; throws a ``Failure`` naming the file for a missing file, a
    /// YAML syntax error (with line and column) or a top level that is not rules.
    static func load(path: String) throws -> RuleFile {
        guard FileManager.default.fileExists(atPath: path) else {
            throw Failure(description: "\(path): no such file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "\(path): cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Failure(description: "\(path): not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    /// Converts the text of a rules file (`path` only names it in errors).
    static func parse(_ text: String, path: String) throws -> RuleFile {
        let converter = Converter(path: path)
        var entries: [Entry] = []
        do {
            let parser = try Yams.Parser(yaml: text, resolver: Converter.resolver(), constructor: .default, encoding: .utf8)
            while let document = try parser.nextRoot() {
                entries += try converter.rules(inDocument: document)
            }
        } catch let error as YamlError {
            throw Failure(description: Self.describe(error, path: path))
        }
        return RuleFile(path: path, entries: entries)
    }

    /// `rules.yaml:14: rule "overheat": condition.threshold.op: must be one of ...` for a field
    /// the server (or the local check) named as `rules[2].condition.threshold.op` (or, for a
    /// single rule sent as `rule`, `rule.condition...` with `index`); nil when the field does
    /// not name a rule of this file.
    func describe(field: String, message: String, index singleIndex: Int? = nil) -> String? {
        let index: Int
        let rest: Substring
        if let singleIndex, field == "rule" || field.hasPrefix("rule.") {
            index = singleIndex
            rest = field.dropFirst("rule".count)
        } else if field.hasPrefix("rules["), let close = field.firstIndex(of: "]"),
            let parsed = Int(field[field.index(field.startIndex, offsetBy: 6)..<close])
        {
            index = parsed
            rest = field[field.index(after: close)...]
        } else {
            return nil
        }
        guard entries.indices.contains(index) else { return nil }
        let entry = entries[index]
        let relative = rest.hasPrefix(".") ? String(rest.dropFirst()) : String(rest)
        // The line of the field, else of the closest enclosing field that is in the file (a
        // missing required field is reported at its parent).
        var lookup = relative
        var line = entry.lines[lookup]
        while line == nil, !lookup.isEmpty {
            let cut = lookup.lastIndex(where: { $0 == "." || $0 == "[" }) ?? lookup.startIndex
            lookup = String(lookup[..<cut])
            line = entry.lines[lookup]
        }
        let location = line.map { "\(path):\($0)" } ?? path
        let rule = entry.name.map { "rule \"\($0)\"" } ?? "rule #\(index + 1)"
        return "\(location): \(rule): " + (relative.isEmpty ? message : "\(relative): \(message)")
    }

    /// Checks every rule with the definition parser the server uses, and that names are
    /// unique; throws a ``Failure`` with ``describe(field:message:)``'s message.
    func validate() throws {
        var seen: [String: Int] = [:]
        for (index, entry) in entries.enumerated() {
            let definition: RuleDefinition
            do {
                definition = try RuleDefinition(json: entry.json, path: "rules[\(index)]")
            } catch {
                throw Failure(description: describe(field: error.field, message: error.message) ?? "\(path): \(error)")
            }
            if let first = seen[definition.name] {
                let line = entries[first].lines[""].map { " (line \($0))" } ?? ""
                throw Failure(
                    description: describe(field: "rules[\(index)].name", message: "another rule in the file has this name\(line)")
                        ?? "\(path): two rules are named \"\(definition.name)\""
                )
            }
            seen[definition.name] = index
        }
    }

    static func describe(_ error: YamlError, path: String) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let around = context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return "\(path):\(mark.line):\(mark.column): YAML syntax error: \(problem)\(around)"
        case .reader(let problem, let offset, _, _):
            return "\(path): cannot read the file as YAML: \(problem)" + (offset.map { " at byte \($0)" } ?? "")
        default:
            return "\(path): not valid YAML: \(error)"
        }
    }
}

/// Yams' nodes to JSON, recording each field's line.
private struct Converter {
    let path: String

    /// YAML 1.2's core schema: true/false, null, decimal ints and floats; everything else a string.
    static func resolver() -> Resolver {
        // The patterns are constants; should one ever fail to compile, everything stays a string.
        guard
            let resolver = try? Resolver.basic
                .appending(.bool, "^(?:true|True|TRUE|false|False|FALSE)$")
                .appending(.int, "^[-+]?[0-9]+$")
                .appending(.float, "^[-+]?(?:[0-9]+\\.[0-9]*|\\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?$")
                .appending(.null, "^(?:~|null|Null|NULL|)$")
                .appending(.merge, "^<<$")
        else { return .basic }
        return resolver
    }

    func failure(_ node: Node, _ message: String) -> RuleFile.Failure {
        let location = node.mark.map { "\(path):\($0.line):\($0.column)" } ?? path
        return RuleFile.Failure(description: "\(location): \(message)")
    }

    /// The rules of one document.
    func rules(inDocument node: Node) throws -> [RuleFile.Entry] {
        let expected = "expected a list of rules, {rules: [...]}, or one rule (a mapping with a name)"
        switch node {
        case .scalar:
            if node.tagName == .null { return [] }  // an empty document
            throw failure(node, "the top level is a \(describe(node)); \(expected)")
        case .sequence(let sequence):
            return try sequence.map(entry)
        case .mapping(let mapping):
            if let list = mapping.first(where: { $0.key.scalar?.string == "rules" })?.value {
                // Other keys are refused, except `x-...` ones: places for anchors (`x-defaults: &d`).
                if let extra = mapping.keys.first(where: { $0.scalar?.string != "rules" && $0.scalar?.string.hasPrefix("x-") != true }) {
                    throw failure(extra, "unexpected key '\(extra.scalar?.string ?? "?")' next to rules: (only x-... keys, for anchors)")
                }
                switch list {
                case .sequence(let sequence): return try sequence.map(entry)
                case .scalar where list.tagName == .null: return []
                default: throw failure(list, "rules: must be a list of rules, not a \(describe(list))")
                }
            }
            guard mapping.contains(where: { $0.key.scalar?.string == "name" }) else { throw failure(node, "the top level has no rules: and no name:; \(expected)") }
            return [try entry(node)]
        }
    }

    func entry(_ node: Node) throws -> RuleFile.Entry {
        guard case .mapping = node else {
            throw failure(node, "each rule must be a mapping (name:, condition:, ...), not a \(describe(node))")
        }
        var lines: [String: Int] = [:]
        let json = try convert(node, field: "", lines: &lines)
        lines[""] = node.mark?.line
        return RuleFile.Entry(json: json, name: json["name"]?.stringValue, lines: lines)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar: node.tagName == .null ? "null" : "scalar ('\(node.scalar?.string ?? "")')"
        case .sequence: "list"
        case .mapping: "mapping"
        }
    }

    func child(_ field: String, _ key: String) -> String { field.isEmpty ? key : "\(field).\(key)" }

    func convert(_ node: Node, field: String, lines: inout [String: Int]) throws -> JSONValue {
        switch node {
        case .scalar(let scalar):
            return try self.scalar(node, scalar.string)
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for (index, item) in sequence.enumerated() {
                let itemField = "\(field)[\(index)]"
                if let line = item.mark?.line { lines[itemField] = line }
                items.append(try convert(item, field: itemField, lines: &lines))
            }
            return .array(items)
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            var merged: [String: JSONValue] = [:]
            for (key, value) in mapping {
                if key.tagName == .merge {
                    for source in try mergeSources(value) {
                        for (name, item) in try convert(source, field: field, lines: &lines).objectValue ?? [:] where merged[name] == nil {
                            merged[name] = item
                        }
                    }
                    continue
                }
                guard case .scalar(let keyScalar) = key, key.tagName == .str else {
                    throw failure(key, "keys must be strings, not \(describe(key)); quote it")
                }
                let name = keyScalar.string
                guard object[name] == nil else { throw failure(key, "duplicate key '\(name)'") }
                let keyField = child(field, name)
                if let line = key.mark?.line { lines[keyField] = line }
                object[name] = try convert(value, field: keyField, lines: &lines)
            }
            return .object(object.merging(merged) { own, _ in own })
        }
    }

    func mergeSources(_ value: Node) throws -> [Node] {
        switch value {
        case .mapping: return [value]
        case .sequence(let sequence) where sequence.allSatisfy({ if case .mapping = $0 { true } else { false } }):
            return Array(sequence)
        default: throw failure(value, "<< must merge a mapping or a list of mappings")
        }
    }

    func scalar(_ node: Node, _ text: String) throws -> JSONValue {
        switch node.tagName {
        case .null: return .null
        case .bool: return .bool(text.lowercased() == "true")
        case .int, .float:
            guard let number = Double(text.replacingOccurrences(of: "_", with: "")), number.isFinite else {
                throw failure(node, "'\(text)' is not a number")
            }
            return .number(number)
        case .str: return .string(text)
        default: throw failure(node, "unsupported tag \(node.tag.description) (use plain values)")
        }
    }
}

extension JSONValue {
    fileprivate var objectValue: [String: JSONValue]? {
        if case .object(let object) = self { object } else { nil }
    }
}

extension Node {
    /// The resolved tag's name (Yams 5 keeps `Tag.name` internal; its description is the name).
    fileprivate var tagName: Tag.Name { Tag.Name(rawValue: tag.description) }
}
