import MQTTCore
import Testing

/// Topic names, topic filters, shared subscriptions and matching (MQTT 5 §4.7, §4.8.2).
@Suite("Topics")
struct TopicTests {
    // MARK: filters

    static let validFilters = [
        "#", "+", "a", "a/+/b", "a/#", "+/+", "/", "//", "/#", "+/#", "a/+", "+/a/#", "a//b", "$SYS/#",
        "devices/+/telemetry", "ü/€/𝄞", "a b/c d", "$share/g/a/#",
    ]
    static let invalidFilters = ["a#", "a/#/b", "a+", "+a", "", "a/b#", "a/+b", "#/", "#/a", "##", "++", "a/++/b"]

    @Test("valid filters", arguments: validFilters)
    func validFilter(_ filter: String) throws {
        try TopicFilter(filter).check()
    }

    @Test("invalid filters", arguments: invalidFilters)
    func invalidFilter(_ filter: String) {
        let error = #expect(throws: MQTTError.self) { try MQTTTopic.validateFilter(filter) }
        #expect(error?.code == .topicFilterInvalid)
        #expect(error?.reasonCode == .topicFilterInvalid)
        let parsed = #expect(throws: MQTTError.self) { _ = try TopicFilter(filter) }
        #expect(parsed?.code == .topicFilterInvalid)
    }

    @Test("a filter with U+0000 is invalid")
    func filterWithNull() {
        let error = #expect(throws: MQTTError.self) { try MQTTTopic.validateFilter("a\u{0}b") }
        #expect(error?.code == .topicFilterInvalid)
    }

    @Test("a filter up to 65535 bytes is valid, longer is not")
    func filterLength() throws {
        try MQTTTopic.validateFilter(String(repeating: "a", count: 65_535))
        let error = #expect(throws: MQTTError.self) {
            try MQTTTopic.validateFilter(String(repeating: "a", count: 65_536))
        }
        #expect(error?.code == .topicFilterInvalid)
    }

    // MARK: shared subscriptions

    struct Shared: Sendable, CustomTestStringConvertible {
        var raw: String
        var group: String?
        var filter: String
        var testDescription: String { raw }
    }

    static let sharedFilters = [
        Shared(raw: "$share/g/a/#", group: "g", filter: "a/#"),
        Shared(raw: "$share/group-1/+", group: "group-1", filter: "+"),
        Shared(raw: "$share/g/#", group: "g", filter: "#"),
        Shared(raw: "$share/g//", group: "g", filter: "/"),
        Shared(raw: "$share/g/$SYS/x", group: "g", filter: "$SYS/x"),
        Shared(raw: "a/#", group: nil, filter: "a/#"),
        Shared(raw: "$shared/g/a", group: nil, filter: "$shared/g/a"),
        Shared(raw: "$SHARE/g/a", group: nil, filter: "$SHARE/g/a"),
    ]

    @Test("shared subscription filters", arguments: sharedFilters)
    func sharedFilter(_ shared: Shared) throws {
        let parsed = try TopicFilter(shared.raw)
        #expect(parsed.raw == shared.raw)
        #expect(parsed.shareGroup == shared.group)
        #expect(parsed.filter == shared.filter)
        #expect(parsed.isShared == (shared.group != nil))
        #expect(parsed.description == shared.raw)
    }

    @Test(
        "invalid shared subscription filters",
        arguments: [
            "$share/g", "$share//a", "$share/g+/a", "$share/g#/a", "$share/+/a", "$share/#/a", "$share/", "$share/g/",
            "$share/g/a#", "$share/g/a/#/b",
        ]
    )
    func invalidShared(_ raw: String) {
        let error = #expect(throws: MQTTError.self) { _ = try TopicFilter(raw) }
        #expect(error?.code == .topicFilterInvalid)
    }

    // MARK: names

    static let validNames = ["a", "a/b", "/", "//", "a//b", "/a", "a/", "$SYS/broker/uptime", "ü/€/𝄞", " ", "a b"]

    @Test("valid names", arguments: validNames)
    func validName(_ name: String) throws {
        try MQTTTopic.validateName(name)
    }

    @Test("invalid names", arguments: ["", "#", "+", "a/#", "a/+/b", "a+", "a#b", "+/+", "a\u{0}"])
    func invalidName(_ name: String) {
        let error = #expect(throws: MQTTError.self) { try MQTTTopic.validateName(name) }
        #expect(error?.code == .topicNameInvalid)
        #expect(error?.reasonCode == .topicNameInvalid)
    }

    @Test("a name longer than 65535 bytes is invalid")
    func nameLength() throws {
        try MQTTTopic.validateName(String(repeating: "é", count: 32_767))
        let error = #expect(throws: MQTTError.self) {
            try MQTTTopic.validateName(String(repeating: "é", count: 32_768))
        }
        #expect(error?.code == .topicNameInvalid)
    }

    // MARK: matching

    struct Match: Sendable, CustomTestStringConvertible {
        var filter: String
        var name: String
        var matches: Bool
        var testDescription: String { "\(filter) \(matches ? "matches" : "does not match") \(name)" }
    }

    static func yes(_ filter: String, _ name: String) -> Match { Match(filter: filter, name: name, matches: true) }
    static func no(_ filter: String, _ name: String) -> Match { Match(filter: filter, name: name, matches: false) }

    static let matchTable: [Match] = [
        // Exact
        yes("a", "a"), yes("a/b", "a/b"), no("a/b", "a"), no("a", "a/b"), no("a/b", "a/c"), no("ab", "a"),
        no("a", "ab"),
        no("a/b", "a/b/"), no("a/b/", "a/b"), yes("a//b", "a//b"), no("A", "a"),
        // '+' is exactly one level, possibly empty
        yes("+", "a"), no("+", "a/b"), no("+", "/"), yes("+/+", "/"), yes("+/+", "a/b"), no("+/+", "a"),
        no("+/+", "a/b/c"),
        yes("a/+", "a/b"), yes("a/+", "a/"), no("a/+", "a"), no("a/+", "a/b/c"), yes("a/+/b", "a/x/b"),
        yes("a/+/b", "a//b"),
        no("a/+/b", "a/b"), no("a/+/b", "a/x/y/b"), yes("+/a", "/a"), yes("/+", "/x"), yes("a/+/+/b", "a///b"),
        yes("+/+/+", "//"),
        // '#' is the parent level and any number of children
        yes("#", "a"), yes("#", "a/b/c"), yes("#", "/"), yes("#", "/a/b"), yes("a/#", "a"), yes("a/#", "a/"),
        yes("a/#", "a/b"),
        yes("a/#", "a/b/c"), no("a/#", "b"), no("a/#", "ab"), no("a/#", "ab/c"), yes("/#", "/"), yes("/#", "/a"),
        no("/#", "a"),
        yes("a/b/#", "a/b"), no("a/b/#", "a"), no("a/b/#", "a/bc"), no("test/6/#", "test/3"),
        // '+' and '#' together
        yes("+/#", "a"), yes("+/#", "a/b/c"), yes("+/#", "/"), yes("a/+/#", "a/b"), yes("a/+/#", "a/b/c/d"),
        no("a/+/#", "a"),
        yes("A/B/+/#", "A/B/B/C"), no("a/+/#", "b/c"), yes("+/+/#", "a/b"), no("+/+/#", "a"),
        // '$' topics are not matched by a leading wildcard (MQTT 5 §4.7.2)
        no("#", "$SYS"), no("#", "$SYS/uptime"), no("+/uptime", "$SYS/uptime"), no("+/#", "$SYS/a"), no("+", "$SYS"),
        yes("$SYS/#", "$SYS"), yes("$SYS/#", "$SYS/broker/uptime"), yes("$SYS/+", "$SYS/uptime"),
        yes("$SYS/uptime", "$SYS/uptime"),
        no("$SYS/#", "$OTHER/x"), yes("a/#", "a/$b"), yes("+/$b", "a/$b"), yes("#", "a$"),
    ]

    @Test("matching", arguments: matchTable)
    func matching(_ match: Match) throws {
        try MQTTTopic.validateFilter(match.filter)
        try MQTTTopic.validateName(match.name)
        #expect(MQTTTopic.matches(filter: match.filter, name: match.name) == match.matches)
    }

    @Test("wildcards and levels")
    func helpers() {
        #expect(MQTTTopic.hasWildcard("a/+"))
        #expect(MQTTTopic.hasWildcard("#"))
        #expect(!MQTTTopic.hasWildcard("a/b"))
        #expect(!MQTTTopic.hasWildcard("$SYS"))
        #expect(MQTTTopic.levelCount("a") == 1)
        #expect(MQTTTopic.levelCount("/") == 2)
        #expect(MQTTTopic.levelCount("a//b/") == 4)
    }
}

extension TopicFilter {
    /// Also validates the parsed filter on its own.
    fileprivate func check() throws {
        try MQTTTopic.validateFilter(filter)
    }
}
