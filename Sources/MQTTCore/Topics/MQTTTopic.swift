/// Topic name and topic filter rules (MQTT 5 §4.7), and matching.
public enum MQTTTopic {
    private static let slash = UInt8(ascii: "/")
    private static let plus = UInt8(ascii: "+")
    private static let hash = UInt8(ascii: "#")
    private static let dollar = UInt8(ascii: "$")

    /// Validates a topic name: not empty, no wildcard characters.
    ///
    /// (UTF-8 well-formedness and the absence of U+0000 are checked when strings are decoded.)
    public static func validateName(_ name: String) throws(MQTTError) {
        let utf8 = name.utf8
        if utf8.isEmpty { throw MQTTError.topicNameInvalid("topic name is empty") }
        if utf8.count > 65_535 { throw MQTTError.topicNameInvalid("topic name is longer than 65535 bytes") }
        let bad = utf8.withContiguousStorageIfAvailable { bytes in
            bytes.contains { $0 == plus || $0 == hash || $0 == 0 }
        } ?? utf8.contains { $0 == plus || $0 == hash || $0 == 0 }
        if bad { throw MQTTError.topicNameInvalid("topic name contains a wildcard character") }
    }

    /// Validates a topic filter: not empty; `#` only as a whole, last level; `+` only as a whole level.
    public static func validateFilter(_ filter: String) throws(MQTTError) {
        let bytes = Array(filter.utf8)
        if bytes.isEmpty { throw MQTTError.topicFilterInvalid("topic filter is empty") }
        if bytes.count > 65_535 { throw MQTTError.topicFilterInvalid("topic filter is longer than 65535 bytes") }
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0 { throw MQTTError.topicFilterInvalid("topic filter contains U+0000") }
            if byte == plus || byte == hash {
                let startsLevel = index == 0 || bytes[index - 1] == slash
                let endsLevel = index + 1 == bytes.count || bytes[index + 1] == slash
                guard startsLevel && endsLevel else {
                    throw MQTTError.topicFilterInvalid("wildcard '\(Character(Unicode.Scalar(byte)))' must occupy a whole level")
                }
                if byte == hash && index + 1 != bytes.count {
                    throw MQTTError.topicFilterInvalid("'#' must be the last level of a topic filter")
                }
            }
            index += 1
        }
    }

    /// Whether `filter` contains a wildcard.
    public static func hasWildcard(_ filter: String) -> Bool {
        filter.utf8.contains { $0 == plus || $0 == hash }
    }

    /// The number of levels in a topic name or filter.
    public static func levelCount(_ topic: String) -> Int {
        var count = 1
        for byte in topic.utf8 where byte == slash { count += 1 }
        return count
    }

    /// Whether the topic `name` matches `filter`. Names beginning with `$` are not matched by a
    /// filter whose first level is a wildcard (MQTT 5 §4.7.2).
    public static func matches(filter: String, name: String) -> Bool {
        var f = filter.utf8.makeIterator()
        var n = name.utf8.makeIterator()
        var fByte = f.next()
        var nByte = n.next()
        if nByte == dollar && (fByte == plus || fByte == hash) { return false }
        while true {
            // "a/#" matches "a" and "a/+/#" matches "a/b": '#' also stands for its parent level
            // (MQTT 5 §4.7.1.2), so a name that ends where the filter has only "/#" left matches.
            if nByte == nil, fByte == slash {
                var rest = f
                if rest.next() == hash && rest.next() == nil { return true }
            }
            switch (fByte, nByte) {
            case (nil, nil):
                return true
            case (hash, _):
                return true
            case (plus, _):
                // Consume one whole level of the name.
                while let b = nByte, b != slash { nByte = n.next() }
                fByte = f.next()
            case (let fb?, let nb?) where fb == nb:
                fByte = f.next()
                nByte = n.next()
            default:
                return false
            }
        }
    }
}

/// A topic filter split into its share group (for `$share/{group}/{filter}`) and the filter.
public struct TopicFilter: Sendable, Hashable, CustomStringConvertible {
    /// The filter as the client sent it.
    public var raw: String
    /// The share group name for shared subscriptions.
    public var shareGroup: String?
    /// The filter matched against topic names.
    public var filter: String

    /// Parses and validates a filter, including the shared subscription form.
    public init(_ raw: String) throws(MQTTError) {
        self.raw = raw
        if raw.hasPrefix("$share/") {
            let rest = raw.dropFirst("$share/".count)
            guard let slashIndex = rest.firstIndex(of: "/") else {
                throw MQTTError.topicFilterInvalid("shared subscription needs $share/{group}/{filter}")
            }
            let group = String(rest[..<slashIndex])
            let filter = String(rest[rest.index(after: slashIndex)...])
            guard !group.isEmpty, !group.contains("+"), !group.contains("#") else {
                throw MQTTError.topicFilterInvalid("share group name must be non-empty without wildcards")
            }
            try MQTTTopic.validateFilter(filter)
            self.shareGroup = group
            self.filter = filter
        } else {
            try MQTTTopic.validateFilter(raw)
            self.shareGroup = nil
            self.filter = raw
        }
    }

    public var isShared: Bool { shareGroup != nil }

    public var description: String { raw }
}
