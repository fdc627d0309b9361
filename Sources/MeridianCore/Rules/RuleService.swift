import Foundation
import Synchronization

/// What changed in a tenant's rules, for the engine.
public enum RuleChange: Sendable {
    case saved(Rule)
    case deleted(ruleID: String, tenantID: String)
}

/// Rules through the API and the CLI: validation, versions (one more per change, every version
/// kept), enable/disable, and `apply` (a whole set upserted by name, all or nothing in
/// validation). Errors are ``RegistryError``s naming the field, which the API serves as
/// problem+json.
public final class RuleService: Sendable {
    public let store: any RuleStore
    /// Most rules per tenant.
    public let maximumRules: Int
    private let now: @Sendable () -> Date
    private let observers = Mutex<[@Sendable (RuleChange) -> Void]>([])

    public init(store: any RuleStore, maximumRules: Int = 10_000, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.maximumRules = maximumRules
        self.now = now
    }

    /// Calls `observer` after every change.
    public func observe(_ observer: @escaping @Sendable (RuleChange) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    private func notify(_ change: RuleChange) {
        for observer in observers.withLock({ $0 }) { observer(change) }
    }

    /// Reads a definition, turning its error into a ``RegistryError`` naming the field.
    public static func definition(_ json: JSONValue, path: String = "") throws -> RuleDefinition {
        do {
            return try RuleDefinition(json: json, path: path)
        } catch {
            throw RegistryError.invalid(error.field, error.message)
        }
    }

    private static func require(_ caller: Caller, _ role: Role) throws {
        guard caller.role.allows(role) else {
            throw RegistryError(.forbidden, "this needs role \(role.rawValue) or above; the caller is \(caller.role.rawValue)")
        }
    }

    /// The tenant's rules, by name.
    public func rules(by caller: Caller) async throws -> [Rule] {
        try Self.require(caller, .viewer)
        return try await store.rules(tenantID: caller.tenantID)
    }

    /// A rule by id, or by name.
    public func rule(_ reference: String, by caller: Caller) async throws -> Rule {
        try Self.require(caller, .viewer)
        if let rule = try await store.rule(id: reference, tenantID: caller.tenantID) { return rule }
        if let rule = try await store.rule(named: reference, tenantID: caller.tenantID) { return rule }
        throw RegistryError.notFound("rule")
    }

    /// Every version of a rule, newest first.
    public func versions(_ reference: String, by caller: Caller) async throws -> [Rule] {
        let rule = try await rule(reference, by: caller)
        return try await store.versions(id: rule.id, tenantID: caller.tenantID)
    }

    /// Creates a rule (version 1).
    public func create(_ definition: RuleDefinition, by caller: Caller) async throws -> Rule {
        try Self.require(caller, .operator)
        guard try await store.rules(tenantID: caller.tenantID).count < maximumRules else {
            throw RegistryError(.limitExceeded, "the tenant has \(maximumRules) rules, the most allowed", field: "name")
        }
        let time = now()
        let rule = Rule(
            id: "rul_" + MeridianID.generate(), tenantID: caller.tenantID, version: 1, definition: Self.withoutSecretMarks(definition),
            createdAt: time, updatedAt: time, updatedBy: caller.actor.description
        )
        do {
            try await store.insert(rule)
        } catch let error as RuleStoreError {
            throw RegistryError(.conflict, error.description, field: "name")
        }
        notify(.saved(rule))
        return rule
    }

    /// Replaces a rule's definition: version + 1. `expectedVersion` (an `If-Match`) must be the
    /// current version when given. A definition equal to the current one changes nothing.
    public func update(_ reference: String, with definition: RuleDefinition, expectedVersion: Int? = nil, by caller: Caller) async throws -> Rule {
        try Self.require(caller, .operator)
        let current = try await rule(reference, by: caller)
        if let expectedVersion, expectedVersion != current.version {
            throw RegistryError(.conflict, "rule \(current.name) is at version \(current.version), not \(expectedVersion)", field: "version")
        }
        let resolved = Self.keepingSecrets(definition, from: current.definition)
        guard resolved != current.definition else { return current }
        var next = current
        next.version = current.version + 1
        next.definition = resolved
        next.updatedAt = now()
        next.updatedBy = caller.actor.description
        let stored: Bool
        do {
            stored = try await store.update(next, expectedVersion: current.version)
        } catch let error as RuleStoreError {
            throw RegistryError(.conflict, error.description, field: "name")
        }
        guard stored else {
            throw RegistryError(.conflict, "rule \(current.name) was changed by someone else meanwhile; read it again", field: "version")
        }
        notify(.saved(next))
        return next
    }

    /// Enables or disables a rule (a new version).
    public func setEnabled(_ reference: String, _ enabled: Bool, by caller: Caller) async throws -> Rule {
        let current = try await rule(reference, by: caller)
        var definition = current.definition
        definition.enabled = enabled
        return try await update(current.id, with: definition, by: caller)
    }

    /// Deletes a rule and its versions.
    public func delete(_ reference: String, by caller: Caller) async throws {
        try Self.require(caller, .operator)
        let current = try await rule(reference, by: caller)
        guard try await store.delete(id: current.id, tenantID: caller.tenantID) else { throw RegistryError.notFound("rule") }
        notify(.deleted(ruleID: current.id, tenantID: caller.tenantID))
    }

    /// What ``apply(_:prune:by:)`` did, by rule name.
    public struct ApplyResult: Sendable, Hashable {
        public var created: [String] = []
        public var updated: [String] = []
        public var unchanged: [String] = []
        public var deleted: [String] = []
    }

    /// Upserts a set of rules by name; with `prune`, deletes the tenant's rules not in the set.
    /// Every definition is checked first (errors name `rules[i].field`; two with one name are
    /// refused), so a file with a mistake changes nothing.
    public func apply(_ definitions: [JSONValue], prune: Bool, by caller: Caller) async throws -> ApplyResult {
        try Self.require(caller, .operator)
        var parsed: [RuleDefinition] = []
        var names: Set<String> = []
        for (index, json) in definitions.enumerated() {
            let definition = try Self.definition(json, path: "rules[\(index)]")
            guard names.insert(definition.name).inserted else {
                throw RegistryError.invalid("rules[\(index)].name", "another rule in the set is named '\(definition.name)'")
            }
            parsed.append(definition)
        }
        let existing = Dictionary(uniqueKeysWithValues: try await store.rules(tenantID: caller.tenantID).map { ($0.name, $0) })
        guard existing.count + parsed.filter({ existing[$0.name] == nil }).count <= maximumRules || prune else {
            throw RegistryError(.limitExceeded, "the tenant would have more than \(maximumRules) rules", field: "rules")
        }
        var result = ApplyResult()
        for definition in parsed {
            if let current = existing[definition.name] {
                let updated = try await update(current.id, with: definition, by: caller)
                if updated.version == current.version { result.unchanged.append(definition.name) } else { result.updated.append(definition.name) }
            } else {
                _ = try await create(definition, by: caller)
                result.created.append(definition.name)
            }
        }
        if prune {
            for (name, rule) in existing.sorted(by: { $0.key < $1.key }) where !names.contains(name) {
                try await delete(rule.id, by: caller)
                result.deleted.append(name)
            }
        }
        return result
    }

    /// A webhook written back from the API says `"secretSet": true` instead of its secret: keep
    /// the current version's secret of the webhook to the same URL.
    static func keepingSecrets(_ definition: RuleDefinition, from current: RuleDefinition) -> RuleDefinition {
        var result = definition
        for index in result.actions.indices {
            guard case .webhook(var action) = result.actions[index].kind, action.keepsSecret else { continue }
            action.keepsSecret = false
            action.secret = current.actions.lazy.compactMap { existing -> String? in
                guard case .webhook(let old) = existing.kind, old.url == action.url else { return nil }
                return old.secret
            }.first
            result.actions[index].kind = .webhook(action)
        }
        return result
    }

    static func withoutSecretMarks(_ definition: RuleDefinition) -> RuleDefinition {
        keepingSecrets(definition, from: RuleDefinition(name: definition.name, condition: definition.condition))
    }
}
