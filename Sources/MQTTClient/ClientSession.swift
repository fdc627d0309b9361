import MQTTCore
import NIOCore

/// The client's side of an MQTT session, without any I/O: packet identifiers, outbound QoS 1/2
/// publishes in flight, inbound QoS 2 messages awaiting PUBREL, and acknowledgements the user
/// still owes in manual mode. It outlives connections; a new session (clean start, or a server
/// that has no session) discards it.
struct ClientSession: Sendable {
    /// Where an outbound QoS 1/2 publish is in its handshake.
    enum Stage: Sendable, Hashable {
        /// Sent (QoS 1), awaiting PUBACK.
        case awaitingPuback
        /// Sent (QoS 2), awaiting PUBREC.
        case awaitingPubrec
        /// PUBREL sent, awaiting PUBCOMP.
        case awaitingPubcomp
    }

    /// An outbound publish that is not yet acknowledged.
    struct OutboundPublish: Sendable {
        var packet: PublishPacket
        var stage: Stage
        /// Order of first transmission, so re-sends keep the original order.
        var sequence: UInt64
        /// The PUBREC received for a QoS 2 publish, returned to the caller after PUBCOMP.
        var pubrec: PublishAckPacket?
    }

    /// What the client owes for an inbound message in manual-acknowledgement mode.
    enum PendingAcknowledgement: Sendable, Hashable {
        case puback
        case pubrec
    }

    private(set) var outbound: [UInt16: OutboundPublish] = [:]
    /// Identifiers of SUBSCRIBE/UNSUBSCRIBE awaiting their acknowledgement.
    private(set) var requestIdentifiers: Set<UInt16> = []
    private var nextIdentifier: UInt16 = 1
    private var nextSequence: UInt64 = 0

    /// Inbound QoS 2 identifiers between PUBLISH and PUBREL: `true` once PUBREC was sent.
    private(set) var inboundAwaitingRelease: [UInt16: Bool] = [:]
    /// Inbound messages the user must acknowledge (manual mode).
    private(set) var pendingAcknowledgements: [UInt16: PendingAcknowledgement] = [:]

    /// The number of outbound QoS 1/2 publishes in flight (they count against the server's
    /// receive maximum).
    var inflightCount: Int { outbound.count }

    /// Whether `identifier` is used by anything in flight.
    func isInUse(_ identifier: UInt16) -> Bool {
        outbound[identifier] != nil || requestIdentifiers.contains(identifier)
    }

    // MARK: packet identifiers

    /// The next free packet identifier, skipping those in flight; `nil` if all 65535 are taken.
    mutating func allocateIdentifier() -> UInt16? {
        let used = outbound.count + requestIdentifiers.count
        guard used < Int(UInt16.max) else { return nil }
        while true {
            let candidate = nextIdentifier
            nextIdentifier = nextIdentifier == UInt16.max ? 1 : nextIdentifier + 1
            if !isInUse(candidate) { return candidate }
        }
    }

    /// Reserves an identifier for a SUBSCRIBE or UNSUBSCRIBE.
    mutating func allocateRequestIdentifier() -> UInt16? {
        guard let identifier = allocateIdentifier() else { return nil }
        requestIdentifiers.insert(identifier)
        return identifier
    }

    /// Frees a SUBSCRIBE/UNSUBSCRIBE identifier; `false` if it was not in use.
    @discardableResult
    mutating func releaseRequestIdentifier(_ identifier: UInt16) -> Bool {
        requestIdentifiers.remove(identifier) != nil
    }

    /// Forgets every SUBSCRIBE/UNSUBSCRIBE in flight (they are not re-sent on reconnect).
    mutating func releaseAllRequestIdentifiers() {
        requestIdentifiers.removeAll()
    }

    // MARK: outbound publishes

    /// Records a QoS 1/2 publish (its packet identifier already set) as sent.
    mutating func trackOutbound(_ packet: PublishPacket) {
        precondition(packet.qos != .atMostOnce, "only QoS 1/2 publishes are tracked")
        guard let identifier = packet.packetIdentifier else {
            preconditionFailure("tracked publish without identifier")
        }
        var stored = packet
        // The alias is per connection; a re-send carries the full topic.
        stored.properties.topicAlias = nil
        let stage: Stage = packet.qos == .atLeastOnce ? .awaitingPuback : .awaitingPubrec
        outbound[identifier] = OutboundPublish(packet: stored, stage: stage, sequence: nextSequence, pubrec: nil)
        nextSequence += 1
    }

    /// What an acknowledgement from the server means for the session.
    enum AckOutcome: Sendable, Equatable {
        /// The publish is complete; hand `ack` to the caller.
        case completed(PublishAckPacket)
        /// A successful PUBREC: send PUBREL with this identifier.
        case sendPubrel(UInt16)
        /// Nothing tracked this identifier in this stage (a duplicate or a server bug).
        case unknown
    }

    /// Applies PUBACK.
    mutating func receivedPuback(_ ack: PublishAckPacket) -> AckOutcome {
        guard let entry = outbound[ack.packetIdentifier], entry.stage == .awaitingPuback else { return .unknown }
        outbound[ack.packetIdentifier] = nil
        return .completed(ack)
    }

    /// Applies PUBREC: a failure code ends the exchange, success moves to PUBREL.
    mutating func receivedPubrec(_ ack: PublishAckPacket) -> AckOutcome {
        guard var entry = outbound[ack.packetIdentifier] else { return .unknown }
        switch entry.stage {
        case .awaitingPuback:
            return .unknown
        case .awaitingPubrec, .awaitingPubcomp:
            if ack.reasonCode.isFailure {
                outbound[ack.packetIdentifier] = nil
                return .completed(ack)
            }
            entry.stage = .awaitingPubcomp
            entry.pubrec = entry.pubrec ?? ack
            outbound[ack.packetIdentifier] = entry
            return .sendPubrel(ack.packetIdentifier)
        }
    }

    /// Applies PUBCOMP. The caller receives the PUBREC (it carries the interesting reason code,
    /// such as 0x10 "no matching subscribers") unless PUBCOMP itself reports a failure.
    mutating func receivedPubcomp(_ ack: PublishAckPacket) -> AckOutcome {
        guard let entry = outbound[ack.packetIdentifier], entry.stage == .awaitingPubcomp else { return .unknown }
        outbound[ack.packetIdentifier] = nil
        if ack.reasonCode.isFailure { return .completed(ack) }
        return .completed(entry.pubrec ?? ack)
    }

    /// The packets to send again after reconnecting, in their original order: PUBLISH with DUP
    /// for those awaiting PUBACK/PUBREC, PUBREL for those awaiting PUBCOMP.
    ///
    /// When the server had no session the publishes go out again without DUP, as new messages.
    func retransmissions(sessionPresent: Bool) -> [MQTTPacket] {
        outbound.values.sorted { $0.sequence < $1.sequence }.map { entry in
            switch entry.stage {
            case .awaitingPuback, .awaitingPubrec:
                var packet = entry.packet
                packet.dup = sessionPresent
                return .publish(packet)
            case .awaitingPubcomp:
                return .pubrel(PublishAckPacket(packetIdentifier: entry.packet.packetIdentifier!))
            }
        }
    }

    // MARK: inbound

    /// What to do with an inbound PUBLISH.
    enum InboundOutcome: Sendable, Equatable {
        /// Deliver it; then send `ack` if there is one (automatic mode).
        case deliver(ack: MQTTPacket?)
        /// A QoS 2 duplicate that was already delivered: do not deliver; re-send `ack` if any.
        case duplicate(ack: MQTTPacket?)
    }

    /// Decides how to handle an inbound PUBLISH.
    mutating func receivedPublish(_ packet: PublishPacket, automaticAcknowledgement: Bool) -> InboundOutcome {
        switch packet.qos {
        case .atMostOnce:
            return .deliver(ack: nil)
        case .atLeastOnce:
            let identifier = packet.packetIdentifier!
            if automaticAcknowledgement {
                return .deliver(ack: .puback(PublishAckPacket(packetIdentifier: identifier)))
            }
            pendingAcknowledgements[identifier] = .puback
            return .deliver(ack: nil)
        case .exactlyOnce:
            let identifier = packet.packetIdentifier!
            if let acknowledged = inboundAwaitingRelease[identifier] {
                return .duplicate(ack: acknowledged ? .pubrec(PublishAckPacket(packetIdentifier: identifier)) : nil)
            }
            inboundAwaitingRelease[identifier] = automaticAcknowledgement
            if automaticAcknowledgement {
                return .deliver(ack: .pubrec(PublishAckPacket(packetIdentifier: identifier)))
            }
            pendingAcknowledgements[identifier] = .pubrec
            return .deliver(ack: nil)
        }
    }

    /// Takes the acknowledgement the user owes for `identifier` (manual mode); `nil` if none.
    mutating func takePendingAcknowledgement(_ identifier: UInt16) -> PendingAcknowledgement? {
        guard let pending = pendingAcknowledgements.removeValue(forKey: identifier) else { return nil }
        if pending == .pubrec { inboundAwaitingRelease[identifier] = true }
        return pending
    }

    /// Applies PUBREL: the QoS 2 exchange ends (PUBCOMP is always sent, as the spec requires).
    mutating func receivedPubrel(_ identifier: UInt16) {
        inboundAwaitingRelease[identifier] = nil
        if pendingAcknowledgements[identifier] == .pubrec { pendingAcknowledgements[identifier] = nil }
    }

    /// A new connection began: acknowledgements owed on the old one are void (the server
    /// re-delivers those messages); QoS 2 messages never PUBREC'd are forgotten so that their
    /// re-delivery is delivered again and can be acknowledged.
    mutating func connectionReplaced() {
        for (identifier, pending) in pendingAcknowledgements where pending == .pubrec {
            inboundAwaitingRelease[identifier] = nil
        }
        pendingAcknowledgements.removeAll()
    }

    /// Discards the whole session (clean start, or the server had none).
    mutating func discardAll() {
        outbound.removeAll()
        requestIdentifiers.removeAll()
        inboundAwaitingRelease.removeAll()
        pendingAcknowledgements.removeAll()
    }

    /// Discards the inbound half only (the server had no session; our outbound messages are
    /// still sent again as new messages).
    mutating func discardInbound() {
        inboundAwaitingRelease.removeAll()
        pendingAcknowledgements.removeAll()
    }
}
