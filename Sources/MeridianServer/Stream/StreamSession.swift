import Foundation
import MeridianCore

/// The protocol logic of one live-stream connection, free of I/O: it takes the client's text
/// messages and the outcomes of the asynchronous checks it asked for, and returns what the
/// channel handler is to do (``Action``). The handler runs one asynchronous check at a time
/// and feeds no further message while one is running (``isBusy``).
struct StreamSession {
    /// Who is connected.
    struct Principal: Sendable, Equatable {
        var caller: Caller
        /// When the credential stops working on its own (nil: never).
        var expiresAt: Date?

        var tenantID: String { caller.tenantID }
        /// The API key, when it authenticated with one.
        var apiKeyID: String? { caller.actor.kind == .apiKey ? caller.actor.id : nil }
    }

    /// A subscription in force.
    struct Active: Sendable, Equatable {
        var subscription: StreamSubscription
        /// The devices it follows; nil: every device of the tenant.
        var devices: Set<String>?

        func follows(_ deviceID: String) -> Bool { devices?.contains(deviceID) ?? true }
    }

    enum Action: Equatable {
        case send(StreamServerMessage)
        /// Check `token` (then call ``authenticated(_:)`` or ``authenticationFailed(_:)``).
        case authenticate(token: String)
        /// Check that the subscription's devices are the tenant's (then call
        /// ``devicesChecked(_:unknown:)`` or ``devicesCheckFailed(_:)``).
        case checkDevices(StreamSubscription, Caller)
        /// The connection is authenticated for the first time: register it with the hub and
        /// close it when the credential expires.
        case open(Principal)
        /// A renewal: the credential and its expiry changed.
        case renew(Principal)
        /// What the connection follows changed.
        case setInterest(StreamHub.Interest)
        /// Which devices' presence events the connection follows changed.
        case setPresenceInterest(StreamHub.Interest)
        /// Close the connection with this WebSocket close code.
        case close(code: UInt16, reason: String)
    }

    enum State: Equatable {
        /// No token came with the upgrade: the first message must be `auth`.
        case awaitingAuthentication
        case authenticating
        case open
        /// A check (renewal, devices) is running.
        case checking
        case closed
    }

    /// Most subscriptions on one connection.
    static let maximumSubscriptions = 100

    private(set) var state: State
    private(set) var principal: Principal?
    /// In the order they were made.
    private(set) var subscriptions: [Active] = []

    /// A session for a connection whose upgrade carried a valid token (`principal`), or none.
    init(principal: Principal?) {
        self.principal = principal
        self.state = principal == nil ? .awaitingAuthentication : .open
    }

    /// Whether an asynchronous check is running (no message may be fed until it ends).
    var isBusy: Bool { state == .authenticating || state == .checking }

    /// The actions for a session opened with a token on the upgrade request.
    func opening() -> [Action] {
        guard let principal else { return [] }
        return [.open(principal), .send(authenticatedMessage(principal))]
    }

    /// One text message from the client.
    mutating func received(_ text: String) -> [Action] {
        precondition(!isBusy, "a message fed while a check runs")
        let parsed = StreamClientMessage.parse(text)
        switch state {
        case .awaitingAuthentication:
            guard case .success(.auth(let token)) = parsed else {
                state = .closed
                return [
                    .close(
                        code: StreamCloseCode.unauthenticated,
                        reason: "authenticate first: {\"type\":\"auth\",\"token\":...}"
                    )
                ]
            }
            state = .authenticating
            return [.authenticate(token: token)]
        case .open:
            break
        case .authenticating, .checking, .closed:
            return []
        }
        switch parsed {
        case .failure(let error):
            return [.send(.error(error))]
        case .success(.ping(let id)):
            return [.send(.pong(id: id))]
        case .success(.auth(let token)):
            state = .authenticating
            return [.authenticate(token: token)]
        case .success(.unsubscribe(let id)):
            guard let position = subscriptions.firstIndex(where: { $0.subscription.id == id }) else {
                return [
                    .send(
                        .error(
                            StreamClientMessageError(
                                code: "unknown-subscription",
                                id: id,
                                "no subscription with this id",
                                field: "id"
                            )
                        )
                    )
                ]
            }
            let removed = subscriptions.remove(at: position)
            return [interestAction(for: removed.subscription.topic), .send(.unsubscribed(id: id))]
        case .success(.subscribe(let subscription)):
            let replacing = subscriptions.contains { $0.subscription.id == subscription.id }
            guard replacing || subscriptions.count < Self.maximumSubscriptions else {
                return [
                    .send(
                        .error(
                            StreamClientMessageError(
                                code: "limit",
                                id: subscription.id,
                                "at most \(Self.maximumSubscriptions) subscriptions per connection",
                                field: "id"
                            )
                        )
                    )
                ]
            }
            guard let principal else { return [] }
            if case .all = subscription.devices { return subscribed(subscription) }
            state = .checking
            return [.checkDevices(subscription, principal.caller)]
        }
    }

    /// The token checked out.
    mutating func authenticated(_ new: Principal) -> [Action] {
        guard state == .authenticating else { return [] }
        guard let current = principal else {
            principal = new
            state = .open
            return [.open(new), .send(authenticatedMessage(new))]
        }
        state = .open
        guard new.tenantID == current.tenantID else {
            return [
                .send(
                    .error(
                        StreamClientMessageError(
                            code: "tenant-mismatch",
                            "the new token is for another tenant; open another connection for it",
                            field: "token"
                        )
                    )
                )
            ]
        }
        principal = new
        return [.renew(new), .send(authenticatedMessage(new))]
    }

    /// The token was refused (`reason` is safe to show the client).
    mutating func authenticationFailed(_ reason: String) -> [Action] {
        guard state == .authenticating else { return [] }
        state = .closed
        return [.close(code: StreamCloseCode.unauthenticated, reason: reason)]
    }

    /// The devices of `subscription` were looked up; `unknown` are not the tenant's.
    mutating func devicesChecked(_ subscription: StreamSubscription, unknown: [String]) -> [Action] {
        guard state == .checking else { return [] }
        state = .open
        guard unknown.isEmpty else {
            let shown = unknown.prefix(20).joined(separator: ", ") + (unknown.count > 20 ? ", ..." : "")
            return [
                .send(
                    .error(
                        StreamClientMessageError(
                            code: "unknown-devices",
                            id: subscription.id,
                            "not devices of your tenant: \(shown)",
                            field: "devices",
                            devices: unknown
                        )
                    )
                )
            ]
        }
        return subscribed(subscription)
    }

    /// The devices could not be looked up (the registry failed).
    mutating func devicesCheckFailed(_ subscription: StreamSubscription) -> [Action] {
        guard state == .checking else { return [] }
        state = .open
        return [
            .send(
                .error(
                    StreamClientMessageError(
                        code: "unavailable",
                        id: subscription.id,
                        "the devices could not be checked; try again"
                    )
                )
            )
        ]
    }

    /// No `auth` message came in time.
    mutating func authenticationDeadlinePassed() -> [Action] {
        guard state == .awaitingAuthentication || state == .authenticating else { return [] }
        state = .closed
        return [.close(code: StreamCloseCode.unauthenticated, reason: "no authentication within 10 s")]
    }

    /// The credential's expiry passed without a renewal.
    mutating func credentialExpired() -> [Action] {
        guard state != .closed, principal != nil else { return [] }
        state = .closed
        return [.close(code: StreamCloseCode.unauthenticated, reason: "the token expired: authenticate again")]
    }

    /// The connection is closing: nothing more is done.
    mutating func close() {
        state = .closed
    }

    /// Whose telemetry and twin changes the hub must deliver (one index for both; the handler
    /// sends each event to the subscriptions of its topic): the union of those subscriptions'
    /// devices.
    var interest: StreamHub.Interest { interest(in: [.telemetry, .twin, .alarm]) }

    /// Whose presence events the hub must deliver: the union of the presence subscriptions'
    /// devices.
    var presenceInterest: StreamHub.Interest { interest(in: [.presence]) }

    private func interestAction(for topic: StreamSubscription.Topic) -> Action {
        switch topic {
        case .telemetry, .twin, .alarm: .setInterest(interest)
        case .presence: .setPresenceInterest(presenceInterest)
        }
    }

    private func interest(in topics: Set<StreamSubscription.Topic>) -> StreamHub.Interest {
        let subscriptions = subscriptions.filter { topics.contains($0.subscription.topic) }
        guard !subscriptions.isEmpty else { return .none }
        var devices = Set<String>()
        for active in subscriptions {
            guard let some = active.devices else { return .all }
            devices.formUnion(some)
        }
        return .devices(devices)
    }

    private mutating func subscribed(_ subscription: StreamSubscription) -> [Action] {
        let devices: Set<String>? =
            switch subscription.devices {
            case .all: nil
            case .some(let ids): Set(ids)
            }
        let active = Active(subscription: subscription, devices: devices)
        var actions: [Action] = []
        if let position = subscriptions.firstIndex(where: { $0.subscription.id == subscription.id }) {
            let replaced = subscriptions[position].subscription.topic
            subscriptions[position] = active
            if replaced != subscription.topic { actions.append(interestAction(for: replaced)) }
        } else {
            subscriptions.append(active)
        }
        return actions + [interestAction(for: subscription.topic), .send(.subscribed(id: subscription.id, topic: subscription.topic))]
    }

    private func authenticatedMessage(_ principal: Principal) -> StreamServerMessage {
        .authenticated(
            tenantID: principal.tenantID,
            role: principal.caller.role,
            expiresAt: principal.expiresAt.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
        )
    }
}
