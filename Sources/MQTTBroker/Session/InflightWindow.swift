import DequeModule
import MQTTCore

/// A message waiting to be sent to a session, with the QoS, retain flag and subscription
/// identifiers of its delivery.
struct Delivery {
    var message: BrokerMessage
    var qos: QoS
    var retain: Bool
    var identifiers: [Int]
    /// The delivery's row in the session store; 0 when it is not stored (QoS 0, a
    /// non-persistent session, or no durable state).
    var sequence: Int64 = 0
}

/// Outbound QoS 1/2 messages sent to a client and not yet acknowledged, by packet identifier,
/// in the order they were sent (the order they are re-sent in on resume).
struct InflightWindow {
    enum Phase {
        /// QoS 1 waiting for PUBACK, or QoS 2 waiting for PUBREC.
        case awaitingAcknowledgement
        /// QoS 2 after PUBREC, waiting for PUBCOMP.
        case awaitingCompletion
    }

    struct Entry {
        var delivery: Delivery
        var phase: Phase
    }

    private(set) var entries: [UInt16: Entry] = [:]
    /// Send order; identifiers no longer in `entries` are skipped lazily.
    private var order: Deque<UInt16> = []
    private var nextIdentifier: UInt16 = 1

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// Adds a delivery under a fresh packet identifier (one not in use) and returns it.
    mutating func add(_ delivery: Delivery) -> UInt16 {
        precondition(entries.count < Int(UInt16.max), "in-flight window exhausted")
        while entries[nextIdentifier] != nil {
            nextIdentifier = nextIdentifier == UInt16.max ? 1 : nextIdentifier + 1
        }
        let identifier = nextIdentifier
        nextIdentifier = nextIdentifier == UInt16.max ? 1 : nextIdentifier + 1
        entries[identifier] = Entry(delivery: delivery, phase: .awaitingAcknowledgement)
        order.append(identifier)
        return identifier
    }

    /// Re-adds an entry under its existing identifier (when a session is adopted).
    mutating func restore(_ identifier: UInt16, _ entry: Entry) {
        if entries.updateValue(entry, forKey: identifier) == nil { order.append(identifier) }
    }

    subscript(identifier: UInt16) -> Entry? { entries[identifier] }

    mutating func setPhase(_ identifier: UInt16, _ phase: Phase) {
        entries[identifier]?.phase = phase
    }

    @discardableResult
    mutating func remove(_ identifier: UInt16) -> Entry? {
        let removed = entries.removeValue(forKey: identifier)
        while let first = order.first, entries[first] == nil { order.removeFirst() }
        if entries.isEmpty { order.removeAll(keepingCapacity: true) }
        return removed
    }

    /// The entries in send order.
    var inOrder: [(UInt16, Entry)] {
        var seen = Set<UInt16>()
        var result: [(UInt16, Entry)] = []
        for identifier in order where seen.insert(identifier).inserted {
            if let entry = entries[identifier] { result.append((identifier, entry)) }
        }
        return result
    }
}
