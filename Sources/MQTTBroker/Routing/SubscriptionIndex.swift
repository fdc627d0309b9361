import MQTTCore

/// One client's subscription at a position of the index.
struct SubscriberEntry {
    var session: Session
    var options: SubscriptionOptions
    var identifier: Int?
}

/// A delivery target after overlapping subscriptions of the same client were merged.
struct MatchTarget {
    var session: Session
    /// Highest QoS granted among the client's matching subscriptions.
    var qos: QoS
    /// No-local only if every matching subscription asked for it.
    var noLocal: Bool
    /// Retain-as-published if any matching subscription asked for it.
    var retainAsPublished: Bool
    /// Subscription identifiers of every matching subscription (MQTT 5).
    var identifiers: [Int]
}

/// The subscribers a topic name reaches.
struct MatchResult {
    var targets: [MatchTarget]
    /// Shared subscription groups; each message goes to one member of each.
    var groups: [SharedGroup]

    var isEmpty: Bool { targets.isEmpty && groups.isEmpty }
}

/// The members of one `$share/{group}/{filter}` subscription; messages go round robin to one
/// member, preferring members that are connected.
final class SharedGroup {
    let name: String
    private(set) var members: [SubscriberEntry] = []
    private var next = 0

    init(name: String) { self.name = name }

    var isEmpty: Bool { members.isEmpty }

    func upsert(_ entry: SubscriberEntry) {
        if let index = members.firstIndex(where: { $0.session.clientIdentifier == entry.session.clientIdentifier }) {
            members[index] = entry
        } else {
            members.append(entry)
        }
    }

    @discardableResult
    func remove(clientIdentifier: String) -> Bool {
        guard let index = members.firstIndex(where: { $0.session.clientIdentifier == clientIdentifier }) else { return false }
        members.remove(at: index)
        if next > index { next -= 1 }
        return true
    }

    /// The next member in turn, skipping members that are offline when some are online.
    func pick() -> SubscriberEntry? {
        let count = members.count
        if count == 0 { return nil }
        for step in 0..<count {
            let index = (next + step) % count
            if members[index].session.isOnline {
                next = (index + 1) % count
                return members[index]
            }
        }
        let index = next % count
        next = (index + 1) % count
        return members[index]
    }
}

/// The subscription trie: one level per node, `+` and `#` as special children.
///
/// One replica lives on each event loop and is only touched there, so matching a PUBLISH takes
/// no lock. Changes are applied to every replica before the SUBACK/UNSUBACK is sent. Levels are
/// looked up as `Substring`s of the topic, so matching allocates nothing per level.
struct SubscriptionIndex {
    final class Node {
        var children: [Substring: Node] = [:]
        var plus: Node?
        var hash: Node?
        /// Subscribers whose filter ends at this node, by client identifier.
        var subscribers: [String: SubscriberEntry] = [:]
        /// Shared groups whose filter ends at this node, by group name.
        var groups: [String: SharedGroup] = [:]

        var isEmpty: Bool {
            children.isEmpty && plus == nil && hash == nil && subscribers.isEmpty && groups.isEmpty
        }
    }

    private let root = Node()
    /// Number of (client, filter) entries, shared ones included.
    private(set) var count = 0

    /// Adds or replaces `entry` for `filter` (replacing is how a resumed session takes over its
    /// subscriptions). Returns whether it was new.
    @discardableResult
    mutating func insert(_ filter: TopicFilter, entry: SubscriberEntry) -> Bool {
        var node = root
        for level in filter.filter.split(separator: "/", omittingEmptySubsequences: false) {
            if level == "+" {
                if node.plus == nil { node.plus = Node() }
                node = node.plus!
            } else if level == "#" {
                if node.hash == nil { node.hash = Node() }
                node = node.hash!
            } else if let child = node.children[level] {
                node = child
            } else {
                let child = Node()
                node.children[level] = child
                node = child
            }
        }
        let clientIdentifier = entry.session.clientIdentifier
        if let groupName = filter.shareGroup {
            let group: SharedGroup
            if let existing = node.groups[groupName] {
                group = existing
            } else {
                group = SharedGroup(name: groupName)
                node.groups[groupName] = group
            }
            let isNew = !group.members.contains { $0.session.clientIdentifier == clientIdentifier }
            group.upsert(entry)
            if isNew { count += 1 }
            return isNew
        }
        let isNew = node.subscribers.updateValue(entry, forKey: clientIdentifier) == nil
        if isNew { count += 1 }
        return isNew
    }

    /// Removes a client's subscription to `filter`; returns whether it existed.
    @discardableResult
    mutating func remove(_ filter: TopicFilter, clientIdentifier: String) -> Bool {
        let levels = filter.filter.split(separator: "/", omittingEmptySubsequences: false)
        let removed = Self.remove(levels[...], from: root, filter: filter, clientIdentifier: clientIdentifier)
        if removed { count -= 1 }
        return removed
    }

    private static func remove(_ levels: ArraySlice<Substring>, from node: Node, filter: TopicFilter, clientIdentifier: String) -> Bool {
        guard let level = levels.first else {
            if let groupName = filter.shareGroup {
                guard let group = node.groups[groupName], group.remove(clientIdentifier: clientIdentifier) else { return false }
                if group.isEmpty { node.groups[groupName] = nil }
                return true
            }
            return node.subscribers.removeValue(forKey: clientIdentifier) != nil
        }
        let rest = levels.dropFirst()
        if level == "+" {
            guard let child = node.plus else { return false }
            let removed = remove(rest, from: child, filter: filter, clientIdentifier: clientIdentifier)
            if child.isEmpty { node.plus = nil }
            return removed
        } else if level == "#" {
            guard let child = node.hash else { return false }
            let removed = remove(rest, from: child, filter: filter, clientIdentifier: clientIdentifier)
            if child.isEmpty { node.hash = nil }
            return removed
        } else {
            guard let child = node.children[level] else { return false }
            let removed = remove(rest, from: child, filter: filter, clientIdentifier: clientIdentifier)
            if child.isEmpty { node.children[level] = nil }
            return removed
        }
    }

    /// Every subscriber whose filter matches the topic name, merged per client.
    func match(_ topic: String) -> MatchResult {
        var levels: [Substring] = []
        levels.reserveCapacity(8)
        var start = topic.startIndex
        let utf8 = topic.utf8
        var index = utf8.startIndex
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: "/") {
                levels.append(topic[start..<index])
                start = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        levels.append(topic[start..<topic.endIndex])
        var collector = Collector()
        let isSystem = utf8.first == UInt8(ascii: "$")
        Self.collect(levels, depth: 0, node: root, isSystem: isSystem, into: &collector)
        return collector.result()
    }

    private struct Collector {
        var targets: [MatchTarget] = []
        var positions: [String: Int] = [:]
        var groups: [SharedGroup] = []

        mutating func add(_ entries: [String: SubscriberEntry]) {
            for (clientIdentifier, entry) in entries {
                if let position = positions[clientIdentifier] {
                    targets[position].qos = max(targets[position].qos, entry.options.qos)
                    targets[position].noLocal = targets[position].noLocal && entry.options.noLocal
                    targets[position].retainAsPublished = targets[position].retainAsPublished || entry.options.retainAsPublished
                    if let identifier = entry.identifier { targets[position].identifiers.append(identifier) }
                } else {
                    positions[clientIdentifier] = targets.count
                    targets.append(
                        MatchTarget(
                            session: entry.session,
                            qos: entry.options.qos,
                            noLocal: entry.options.noLocal,
                            retainAsPublished: entry.options.retainAsPublished,
                            identifiers: entry.identifier.map { [$0] } ?? []
                        )
                    )
                }
            }
        }

        func result() -> MatchResult { MatchResult(targets: targets, groups: groups) }
    }

    private static func collect(_ levels: [Substring], depth: Int, node: Node, isSystem: Bool, into collector: inout Collector) {
        let wildcardAllowed = depth > 0 || !isSystem
        if wildcardAllowed, let hash = node.hash {
            collector.add(hash.subscribers)
            collector.groups.append(contentsOf: hash.groups.values)
        }
        if depth == levels.count {
            collector.add(node.subscribers)
            collector.groups.append(contentsOf: node.groups.values)
            return
        }
        if let child = node.children[levels[depth]] {
            collect(levels, depth: depth + 1, node: child, isSystem: isSystem, into: &collector)
        }
        if wildcardAllowed, let plus = node.plus {
            collect(levels, depth: depth + 1, node: plus, isSystem: isSystem, into: &collector)
        }
    }
}
