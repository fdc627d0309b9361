/// One entry of the configuration registry: a dotted snake_case name, a type with its constraint,
/// a one-line help, and how it reads and writes ``MeridianConfiguration``.
///
/// The registry (``MeridianConfiguration/keys``) drives the config file reader, the environment
/// reader, `--set`, `meridian serve --help`, `meridian config show` and validation. Build entries
/// with the typed factories (``integer(_:_:range:flag:help:)`` and friends).
public struct ConfigurationKey: Sendable {
    /// The type of a key's value and the constraint on it.
    public enum ValueType: Sendable, Hashable, CustomStringConvertible {
        /// Any string accepted by the key's own check.
        case string
        /// A whole number in the range.
        case integer(ClosedRange<Int>)
        /// `true` or `false`.
        case boolean
        /// One of a fixed list of words (compared ignoring case).
        case choice([String])

        /// "string", "integer 0–65535", "integer ≥ 1", "boolean", "one of: a, b".
        public var description: String {
            switch self {
            case .string:
                return "string"
            case .integer(let range):
                if range.upperBound == Int.max { return "integer ≥ \(range.lowerBound)" }
                return "integer \(range.lowerBound)–\(range.upperBound)"
            case .boolean:
                return "boolean"
            case .choice(let words):
                return "one of: " + words.joined(separator: ", ")
            }
        }
    }

    /// Dotted snake_case name, as used in the config file and `--set`: `network.mqtt_port`.
    public let name: String
    /// The value's type and constraint.
    public let type: ValueType
    /// One line saying what the key means.
    public let help: String
    /// The dedicated `meridian serve` flag for this key (`--mqtt-port`), if it has one.
    public let flag: String?
    /// Extra check beyond the type: returns why a (well-typed) value is not acceptable.
    private let check: @Sendable (TOMLValue) -> String?
    /// How a value is shown in messages and `config show` (hides secrets such as a password in
    /// a URL); nil shows it as it is.
    private let redact: (@Sendable (TOMLValue) -> String)?
    private let read: @Sendable (MeridianConfiguration) -> TOMLValue
    private let write: @Sendable (inout MeridianConfiguration, TOMLValue) -> Void

    /// A key with hand-written accessors; prefer the typed factories.
    ///
    /// `set` is only ever called with a value that has passed `type` and `check`.
    public init(
        name: String,
        type: ValueType,
        flag: String? = nil,
        help: String,
        check: @escaping @Sendable (TOMLValue) -> String? = { _ in nil },
        redact: (@Sendable (TOMLValue) -> String)? = nil,
        get: @escaping @Sendable (MeridianConfiguration) -> TOMLValue,
        set: @escaping @Sendable (inout MeridianConfiguration, TOMLValue) -> Void
    ) {
        self.name = name
        self.type = type
        self.flag = flag
        self.help = help
        self.check = check
        self.redact = redact
        self.read = get
        self.write = set
    }

    /// The key's components: `["network", "mqtt_port"]`.
    public var path: [String] { name.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }

    /// The last component, as written under the key's `[table]` header: `mqtt_port`.
    public var shortName: String {
        guard let dot = name.lastIndex(of: ".") else { return name }
        return String(name[name.index(after: dot)...])
    }

    /// `MERIDIAN_` followed by the upper-cased name with dots as underscores:
    /// `MERIDIAN_NETWORK_MQTT_PORT`.
    public var environmentVariable: String {
        "MERIDIAN_" + String(name.uppercased().map { $0 == "." ? "_" : $0 })
    }

    /// `value` as TOML for messages and `config show`, with any secret in it hidden.
    public func displayText(_ value: TOMLValue) -> String {
        redact?(value) ?? value.tomlText
    }

    /// The built-in default.
    public var defaultValue: TOMLValue { read(MeridianConfiguration()) }

    /// This key's current value in `configuration`.
    public func value(in configuration: MeridianConfiguration) -> TOMLValue {
        read(configuration)
    }

    /// Sets this key in `configuration` after checking type and constraint; on failure returns the
    /// reason ("must be at least 1") and leaves `configuration` unchanged.
    public func apply(_ value: TOMLValue, to configuration: inout MeridianConfiguration) -> String? {
        if let reason = validate(value) { return reason }
        write(&configuration, value)
        return nil
    }

    /// Why `value` is not acceptable for this key, or nil when it is.
    public func validate(_ value: TOMLValue) -> String? {
        switch (type, value) {
        case (.string, .string), (.boolean, .boolean):
            break
        case (.integer(let range), .integer(let integer)):
            if !range.contains(integer) {
                if range.upperBound == Int.max { return "must be at least \(range.lowerBound)" }
                return "must be between \(range.lowerBound) and \(range.upperBound)"
            }
        case (.choice(let words), .string(let word)):
            if !words.contains(word.lowercased()) {
                return "must be one of " + words.joined(separator: ", ")
            }
        default:
            return "must be \(type.expectedTypeName), not \(value.article) \(value.typeName)"
        }
        return check(value)
    }

    /// Reads a value written as plain text (an environment variable, `--set`, a flag) according
    /// to the key's type: strings as they are, integers in TOML syntax (`1_000`, `0x10`), booleans
    /// as `true`/`false`/`1`/`0`. Returns the reason when the text is not of the right type; the
    /// constraint is checked by ``apply(_:to:)``.
    public func parse(text: String) -> Result<TOMLValue, ParseFailure> {
        switch type {
        case .string, .choice:
            return .success(.string(text))
        case .integer:
            let trimmed = text.trimmingSpaces
            if let integer = TOMLParser.integer(trimmed) { return .success(.integer(integer)) }
            if TOMLParser.isOutOfRangeInteger(trimmed) {
                return .failure(ParseFailure(reason: "does not fit in 64 bits"))
            }
            return .failure(ParseFailure(reason: "must be an integer"))
        case .boolean:
            switch text.trimmingSpaces.lowercased() {
            case "true", "1": return .success(.boolean(true))
            case "false", "0": return .success(.boolean(false))
            default: return .failure(ParseFailure(reason: "must be true or false"))
            }
        }
    }

    /// Why a piece of text could not be read as the key's type.
    public struct ParseFailure: Error, Sendable, Hashable {
        public var reason: String
    }
}

extension ConfigurationKey {
    /// An integer key stored in a field of any integer type; `range` must fit that type.
    public static func integer<Value: FixedWidthInteger & Sendable>(
        _ name: String,
        _ keyPath: any WritableKeyPath<MeridianConfiguration, Value> & Sendable,
        range: ClosedRange<Int>,
        flag: String? = nil,
        help: String
    ) -> ConfigurationKey {
        precondition(
            Value(exactly: range.lowerBound) != nil && Value(exactly: range.upperBound) != nil,
            "range of \(name) does not fit \(Value.self)"
        )
        return ConfigurationKey(
            name: name,
            type: .integer(range),
            flag: flag,
            help: help,
            get: { .integer(Int($0[keyPath: keyPath])) },
            set: { configuration, value in
                guard case .integer(let integer) = value, let converted = Value(exactly: integer) else {
                    preconditionFailure("\(name) set with an unchecked value")
                }
                configuration[keyPath: keyPath] = converted
            }
        )
    }

    /// A boolean key.
    public static func boolean(
        _ name: String,
        _ keyPath: any WritableKeyPath<MeridianConfiguration, Bool> & Sendable,
        flag: String? = nil,
        help: String
    ) -> ConfigurationKey {
        ConfigurationKey(
            name: name,
            type: .boolean,
            flag: flag,
            help: help,
            get: { .boolean($0[keyPath: keyPath]) },
            set: { configuration, value in
                guard case .boolean(let bool) = value else {
                    preconditionFailure("\(name) set with an unchecked value")
                }
                configuration[keyPath: keyPath] = bool
            }
        )
    }

    /// A string key; `check` returns why a string is not acceptable (by default: empty strings are
    /// not); `redact`, when given, is how a value is shown (hiding a secret in it).
    public static func string(
        _ name: String,
        _ keyPath: any WritableKeyPath<MeridianConfiguration, String> & Sendable,
        flag: String? = nil,
        help: String,
        check: @escaping @Sendable (String) -> String? = { $0.isEmpty ? "must not be empty" : nil },
        redact: (@Sendable (String) -> String)? = nil
    ) -> ConfigurationKey {
        ConfigurationKey(
            name: name,
            type: .string,
            flag: flag,
            help: help,
            check: { value in
                guard case .string(let string) = value else { return nil }
                return check(string)
            },
            redact: redact.map { redact -> @Sendable (TOMLValue) -> String in
                { value in
                    guard case .string(let string) = value else { return value.tomlText }
                    return TOMLValue.string(redact(string)).tomlText
                }
            },
            get: { .string($0[keyPath: keyPath]) },
            set: { configuration, value in
                guard case .string(let string) = value else {
                    preconditionFailure("\(name) set with an unchecked value")
                }
                configuration[keyPath: keyPath] = string
            }
        )
    }

    /// A key whose value is one of a fixed list of words, each standing for a value of the field.
    public static func choice<Value: Equatable & Sendable>(
        _ name: String,
        _ keyPath: any WritableKeyPath<MeridianConfiguration, Value> & Sendable,
        _ choices: [(word: String, value: Value)],
        flag: String? = nil,
        help: String
    ) -> ConfigurationKey {
        ConfigurationKey(
            name: name,
            type: .choice(choices.map(\.word)),
            flag: flag,
            help: help,
            get: { configuration in
                let current = configuration[keyPath: keyPath]
                guard let word = choices.first(where: { $0.value == current })?.word else {
                    preconditionFailure("\(name) holds a value with no word for it")
                }
                return .string(word)
            },
            set: { configuration, value in
                guard case .string(let word) = value,
                    let choice = choices.first(where: { $0.word == word.lowercased() })
                else { preconditionFailure("\(name) set with an unchecked value") }
                configuration[keyPath: keyPath] = choice.value
            }
        )
    }
}

extension ConfigurationKey.ValueType {
    /// "a string", "an integer", ... for "must be an integer, not a string".
    fileprivate var expectedTypeName: String {
        switch self {
        case .string, .choice: "a string"
        case .integer: "an integer"
        case .boolean: "a boolean (true or false)"
        }
    }
}

extension TOMLValue {
    fileprivate var article: String {
        switch self {
        case .integer, .array: "an"
        case .string, .float, .boolean: "a"
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
