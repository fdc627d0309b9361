import Atomics
import MQTTCore
import Metrics

/// Broker-wide counters. Connections update event-loop-local tallies (``LoopStats``) and fold
/// them in here once per event-loop iteration, so the hot path touches no shared memory per
/// message. Exported through swift-metrics (Prometheus at `/metrics`) and `$SYS`.
final class BrokerMetrics: Sendable {
    let messagesReceived = ManagedAtomic<Int>(0)
    let messagesSent = ManagedAtomic<Int>(0)
    let bytesReceived = ManagedAtomic<Int>(0)
    let bytesSent = ManagedAtomic<Int>(0)
    let messagesDropped = ManagedAtomic<Int>(0)
    let connections = ManagedAtomic<Int>(0)
    let sessions = ManagedAtomic<Int>(0)
    let subscriptions = ManagedAtomic<Int>(0)

    private let connectionsGauge = Gauge(label: "mqtt_connections")
    private let sessionsGauge = Gauge(label: "mqtt_sessions")
    private let subscriptionsGauge = Gauge(label: "mqtt_subscriptions")
    private let retainedGauge = Gauge(label: "mqtt_retained_messages")
    private let connectionsAccepted = Counter(label: "mqtt_connections_total")
    private let throttled = Counter(label: "mqtt_publishers_throttled_total")
    private let connectionsRefused: [String: Counter]
    private let receivedCounter = Counter(label: "mqtt_messages_received_total")
    private let sentCounter = Counter(label: "mqtt_messages_sent_total")
    private let bytesInCounter = Counter(label: "mqtt_bytes_received_total")
    private let bytesOutCounter = Counter(label: "mqtt_bytes_sent_total")
    private let droppedCounters: [DropReason: Counter]
    private let packetsIn: [Counter]
    private let packetsOut: [Counter]

    /// Why a message was not delivered.
    enum DropReason: String, CaseIterable, Sendable {
        /// A session's queue was full; the oldest message was dropped.
        case queueFull = "queue_full"
        /// A QoS 0 message to a client whose socket is not draining.
        case slowConsumer = "slow_consumer"
        /// Larger than the client's maximum packet size.
        case packetTooLarge = "packet_too_large"
        /// Message expiry passed while queued.
        case expired
    }

    init() {
        var dropped: [DropReason: Counter] = [:]
        for reason in DropReason.allCases {
            dropped[reason] = Counter(label: "mqtt_messages_dropped_total", dimensions: [("reason", reason.rawValue)])
        }
        self.droppedCounters = dropped
        var refused: [String: Counter] = [:]
        for reason in ["auth", "protocol", "limit", "tls"] {
            refused[reason] = Counter(label: "mqtt_connections_refused_total", dimensions: [("reason", reason)])
        }
        self.connectionsRefused = refused
        var inbound: [Counter] = []
        var outbound: [Counter] = []
        for raw in 0..<16 {
            let name = MQTTPacketType(rawValue: UInt8(raw))?.metricName ?? "reserved"
            inbound.append(Counter(label: "mqtt_packets_received_total", dimensions: [("type", name)]))
            outbound.append(Counter(label: "mqtt_packets_sent_total", dimensions: [("type", name)]))
        }
        self.packetsIn = inbound
        self.packetsOut = outbound
    }

    func connectionOpened() {
        let now = connections.wrappingIncrementThenLoad(ordering: .relaxed)
        connectionsGauge.record(now)
        connectionsAccepted.increment()
    }

    func connectionClosed() {
        let now = connections.wrappingDecrementThenLoad(ordering: .relaxed)
        connectionsGauge.record(now)
    }

    /// A publisher's acknowledgements started being held for a congested subscriber.
    func publisherThrottled() {
        throttled.increment()
    }

    func connectionRefused(_ reason: String) {
        connectionsRefused[reason]?.increment()
    }

    func sessionsChanged(to count: Int) {
        sessions.store(count, ordering: .relaxed)
        sessionsGauge.record(count)
    }

    func subscriptionsChanged(by delta: Int) {
        subscriptionsGauge.record(subscriptions.wrappingIncrementThenLoad(by: delta, ordering: .relaxed))
    }

    func retainedCount(_ count: Int) {
        retainedGauge.record(count)
    }

    /// Folds an event loop's tallies in and resets them.
    func absorb(_ stats: inout LoopStats) {
        if stats.messagesReceived > 0 {
            messagesReceived.wrappingIncrement(by: stats.messagesReceived, ordering: .relaxed)
            receivedCounter.increment(by: stats.messagesReceived)
        }
        if stats.messagesSent > 0 {
            messagesSent.wrappingIncrement(by: stats.messagesSent, ordering: .relaxed)
            sentCounter.increment(by: stats.messagesSent)
        }
        if stats.bytesReceived > 0 {
            bytesReceived.wrappingIncrement(by: stats.bytesReceived, ordering: .relaxed)
            bytesInCounter.increment(by: stats.bytesReceived)
        }
        if stats.bytesSent > 0 {
            bytesSent.wrappingIncrement(by: stats.bytesSent, ordering: .relaxed)
            bytesOutCounter.increment(by: stats.bytesSent)
        }
        if stats.anyDropped {
            for (index, reason) in DropReason.allCases.enumerated() where stats.dropped[index] > 0 {
                messagesDropped.wrappingIncrement(by: stats.dropped[index], ordering: .relaxed)
                droppedCounters[reason]?.increment(by: stats.dropped[index])
            }
        }
        if stats.anyPackets {
            for index in 0..<16 {
                if stats.packetsIn[index] > 0 { packetsIn[index].increment(by: stats.packetsIn[index]) }
                if stats.packetsOut[index] > 0 { packetsOut[index].increment(by: stats.packetsOut[index]) }
            }
        }
        stats.reset()
    }
}

/// Counters local to one event loop, folded into ``BrokerMetrics`` once per loop iteration.
struct LoopStats {
    var messagesReceived = 0
    var messagesSent = 0
    var bytesReceived = 0
    var bytesSent = 0
    var dropped = [Int](repeating: 0, count: BrokerMetrics.DropReason.allCases.count)
    var anyDropped = false
    var packetsIn = [Int](repeating: 0, count: 16)
    var packetsOut = [Int](repeating: 0, count: 16)
    var anyPackets = false

    mutating func reset() {
        messagesReceived = 0
        messagesSent = 0
        bytesReceived = 0
        bytesSent = 0
        if anyDropped {
            for i in dropped.indices { dropped[i] = 0 }
            anyDropped = false
        }
        if anyPackets {
            for i in 0..<16 {
                packetsIn[i] = 0
                packetsOut[i] = 0
            }
            anyPackets = false
        }
    }

    var isEmpty: Bool {
        messagesReceived == 0 && messagesSent == 0 && bytesReceived == 0 && bytesSent == 0 && !anyDropped && !anyPackets
    }

    @inline(__always)
    mutating func packetIn(_ type: UInt8) {
        packetsIn[Int(type & 0x0F)] &+= 1
        anyPackets = true
    }

    @inline(__always)
    mutating func packetOut(_ type: MQTTPacketType) {
        packetsOut[Int(type.rawValue)] &+= 1
        anyPackets = true
    }

    @inline(__always)
    mutating func drop(_ reason: BrokerMetrics.DropReason, count: Int = 1) {
        dropped[BrokerMetrics.DropReason.allCases.firstIndex(of: reason)!] &+= count
        anyDropped = true
    }
}
