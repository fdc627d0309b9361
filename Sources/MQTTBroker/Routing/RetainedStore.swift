import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// The last retained message of every topic, shared by all event loops.
///
/// Retained publishes and subscribes take a lock; ordinary publishes never touch this store.
final class RetainedStore: Sendable {
    private final class Node: @unchecked Sendable {
        var children: [Substring: Node] = [:]
        var message: BrokerMessage?
        var isEmpty: Bool { children.isEmpty && message == nil }
    }

    private struct State: Sendable {
        let root = Node()
        var count = 0
    }

    private let state = NIOLockedValueBox(State())

    /// The number of retained messages.
    var count: Int { state.withLockedValue { $0.count } }

    /// Stores `message` as the retained message of its topic, or deletes the topic's retained
    /// message when the payload is empty. Returns the new count.
    @discardableResult
    func set(_ message: BrokerMessage) -> Int {
        let topic = message.topic
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        return state.withLockedValue { state in
            if message.payload.readableBytes == 0 {
                if Self.remove(levels[...], from: state.root) { state.count -= 1 }
                return state.count
            }
            var node = state.root
            for level in levels {
                if let child = node.children[level] {
                    node = child
                } else {
                    let child = Node()
                    node.children[level] = child
                    node = child
                }
            }
            if node.message == nil { state.count += 1 }
            node.message = message.compacted().with(retain: true)
            return state.count
        }
    }

    private static func remove(_ levels: ArraySlice<Substring>, from node: Node) -> Bool {
        guard let level = levels.first else {
            guard node.message != nil else { return false }
            node.message = nil
            return true
        }
        guard let child = node.children[level] else { return false }
        let removed = remove(levels.dropFirst(), from: child)
        if child.isEmpty { node.children[level] = nil }
        return removed
    }

    /// The retained messages whose topics match `filter`, dropping the expired ones.
    func matching(_ filter: String, now: NIODeadline) -> [BrokerMessage] {
        let levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        return state.withLockedValue { state in
            var found: [BrokerMessage] = []
            var expired: [String] = []
            Self.collect(levels[...], node: state.root, depth: 0, into: &found)
            found.removeAll { message in
                if message.isExpired(at: now) {
                    expired.append(message.topic)
                    return true
                }
                return false
            }
            for topic in expired {
                if Self.remove(topic.split(separator: "/", omittingEmptySubsequences: false)[...], from: state.root) {
                    state.count -= 1
                }
            }
            return found
        }
    }

    private static func collect(_ levels: ArraySlice<Substring>, node: Node, depth: Int, into found: inout [BrokerMessage]) {
        guard let level = levels.first else {
            if let message = node.message { found.append(message) }
            return
        }
        if level == "#" {
            // '#' also matches the parent level itself ("a/#" matches "a").
            if depth > 0, let message = node.message { found.append(message) }
            collectAll(node: node, depth: depth, into: &found)
            return
        }
        if level == "+" {
            for (name, child) in node.children where !(depth == 0 && name.utf8.first == UInt8(ascii: "$")) {
                collect(levels.dropFirst(), node: child, depth: depth + 1, into: &found)
            }
            return
        }
        if let child = node.children[level] {
            collect(levels.dropFirst(), node: child, depth: depth + 1, into: &found)
        }
    }

    private static func collectAll(node: Node, depth: Int, into found: inout [BrokerMessage]) {
        for (name, child) in node.children where !(depth == 0 && name.utf8.first == UInt8(ascii: "$")) {
            if let message = child.message { found.append(message) }
            collectAll(node: child, depth: depth + 1, into: &found)
        }
    }
}
