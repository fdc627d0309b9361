import Foundation
import MeridianCore
import Synchronization
import Testing

/// A clock the tests move by hand.
final class CommandTestClock: Sendable {
    private let value = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { value.withLock { $0 } }
    func advance(milliseconds: Int) { value.withLock { $0 = $0.addingTimeInterval(Double(milliseconds) / 1000) } }
}

/// A transport whose devices are online when the test says so; records what it sent.
final class FakeCommandTransport: CommandTransport {
    private let state = Mutex((online: [String: CommandConvention](), sent: [(Command, CommandConvention)](), reaches: true, slowFirst: false, calls: 0))

    func setOnline(_ deviceID: String, _ convention: CommandConvention?) { state.withLock { $0.online[deviceID] = convention } }
    /// false: publishes find nobody (the device left between lookup and publish).
    func setReaches(_ reaches: Bool) { state.withLock { $0.reaches = reaches } }
    var sent: [(Command, CommandConvention)] { state.withLock { $0.sent } }
    /// true: the first publish takes a while (as a real one may), so that others could overtake it.
    func setSlowFirst(_ slow: Bool) { state.withLock { $0.slowFirst = slow } }

    func route(tenantID: String, deviceID: String) -> CommandConvention? { state.withLock { $0.online[deviceID] } }

    func send(_ command: Command, by convention: CommandConvention) async -> CommandConvention? {
        // A real publish suspends: let concurrent deliveries interleave here.
        let slow = state.withLock { state -> Bool in
            state.calls += 1
            return state.slowFirst && state.calls == 1
        }
        if slow { try? await Task.sleep(for: .milliseconds(50)) } else { await Task.yield() }
        return state.withLock { state in
            guard state.reaches else { return nil }
            state.sent.append((command, convention))
            return convention
        }
    }
}

struct CommandHarness {
    let clock: CommandTestClock
    let store: InMemoryCommandStore
    let transport: FakeCommandTransport
    let service: CommandService

    init(perDevice: Int = 0, perTenant: Int = 0, settings: CommandService.Settings = CommandService.Settings(), realTime: Bool = false) {
        let clock = CommandTestClock()
        let store = InMemoryCommandStore()
        let transport = FakeCommandTransport()
        let now: @Sendable () -> Date
        if realTime {
            now = { Date() }
        } else {
            now = { clock.now }
        }
        let service = CommandService(
            store: store, settings: settings, limiter: CommandRateLimiter(perDevice: perDevice, perTenant: perTenant), now: now
        )
        service.attach(transport)
        self.clock = clock
        self.store = store
        self.transport = transport
        self.service = service
    }

    func send(_ request: CommandRequest, device: String = "d1", tenant: String = "t1") async throws -> Command {
        try await service.send(request, tenantID: tenant, deviceID: device, actor: "api-key:k1")
    }
}

@Suite("Command service")
struct CommandServiceTests {
    @Test("a two-way command to a connected device is sent and succeeds with the device's answer")
    func twoWaySucceeds() async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt5)
        let command = try await harness.send(CommandRequest(method: "setInterval", params: .object(["s": .number(5)]), timeoutMs: 5000))
        #expect(command.state == .sent)
        #expect(command.convention == .mqtt5)
        #expect(harness.transport.sent.map(\.0.id) == [command.id])
        await harness.service.delivered(commandID: command.id)
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .delivered)
        let verdict = await harness.service.answer(commandID: command.id, tenantID: "t1", deviceID: "d1", outcome: .success(.object(["ok": .bool(true)])))
        #expect(verdict == .accepted)
        let finished = try await harness.service.awaitAnswer(command)
        #expect(finished.state == .succeeded)
        #expect(finished.response == .object(["ok": .bool(true)]))
        #expect(Set(finished.timestamps.keys) == [.queued, .sent, .delivered, .succeeded])
        // A second answer is refused: the command is finished.
        #expect(await harness.service.answer(commandID: command.id, tenantID: "t1", deviceID: "d1", outcome: .success(.null)) == .finished)
    }

    @Test("a device's error answer fails the command with its message")
    func errorAnswerFails() async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt311)
        let command = try await harness.send(CommandRequest(method: "open"))
        let outcome = try #require(CommandOutcome.parse(Array(#"{"error":"valve stuck"}"#.utf8)))
        #expect(await harness.service.answer(commandID: command.id, tenantID: "t1", deviceID: "d1", outcome: outcome) == .accepted)
        let stored = try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1")
        #expect(stored.state == .failed)
        #expect(stored.error == "valve stuck")
    }

    @Test("an answer for another device's command, or an unknown one, is refused and changes nothing")
    func foreignAnswersRefused() async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt5)
        let command = try await harness.send(CommandRequest(method: "reboot"))
        #expect(await harness.service.answer(commandID: command.id, tenantID: "t1", deviceID: "d2", outcome: .success(.null)) == .notYours)
        #expect(await harness.service.answer(commandID: command.id, tenantID: "t2", deviceID: "d1", outcome: .success(.null)) == .notYours)
        #expect(await harness.service.answer(commandID: "nosuchcommand", tenantID: "t1", deviceID: "d1", outcome: .success(.null)) == .unknown)
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .sent)
        // Another device cannot read it either.
        await #expect(throws: CommandError.self) { try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d2") }
    }

    @Test("a persistent command to an offline device is queued and sent, in order, when the device comes")
    func persistentQueued() async throws {
        let harness = CommandHarness()
        let first = try await harness.send(CommandRequest(method: "a", persistent: true))
        harness.clock.advance(milliseconds: 1)
        let second = try await harness.send(CommandRequest(method: "b", persistent: true))
        #expect(first.state == .queued)
        #expect(second.state == .queued)
        #expect(first.expiresAt == first.createdAt.addingTimeInterval(Double(CommandService.Settings().maximumExpiryMs) / 1000))
        #expect(harness.transport.sent.isEmpty)
        harness.transport.setOnline("d1", .thingsBoard)
        await harness.service.deliverQueued(tenantID: "t1", deviceID: "d1")
        #expect(harness.transport.sent.map(\.0.method) == ["a", "b"])
        #expect(harness.transport.sent.allSatisfy { $0.1 == .thingsBoard })
        #expect(try await harness.service.command(id: first.id, tenantID: "t1", deviceID: "d1").state == .sent)
        // Delivering again sends nothing twice.
        await harness.service.deliverQueued(tenantID: "t1", deviceID: "d1")
        #expect(harness.transport.sent.count == 2)
    }

    @Test("deliveries started at once (several subscribes) still send each queued command once, in order")
    func concurrentDeliveries() async throws {
        let harness = CommandHarness()
        var ids: [String] = []
        for index in 0..<6 {
            harness.clock.advance(milliseconds: 1)
            ids.append(try await harness.send(CommandRequest(method: "m\(index)", persistent: true)).id)
        }
        harness.transport.setOnline("d1", .mqtt5)
        harness.transport.setSlowFirst(true)
        let service = harness.service
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { await service.deliverQueued(tenantID: "t1", deviceID: "d1") } }
        }
        #expect(harness.transport.sent.map(\.0.id) == ids)
    }

    @Test("a command whose publish finds nobody goes back to the queue (persistent) or fails (not persistent)")
    func publishFindsNobody() async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt5)
        harness.transport.setReaches(false)
        let queued = try await harness.send(CommandRequest(method: "a", persistent: true))
        #expect(queued.state == .queued)
        #expect(queued.sentAt == nil)
        await #expect(throws: CommandError.self) { try await harness.send(CommandRequest(method: "b")) }
    }

    @Test("a non-persistent command to an offline device is refused and recorded as failed")
    func offlineRefused() async throws {
        let harness = CommandHarness()
        let error = await #expect(throws: CommandError.self) { try await harness.send(CommandRequest(method: "reboot")) }
        #expect(error?.code == .deviceOffline)
        let id = try #require(error?.commandID)
        let stored = try await harness.service.command(id: id, tenantID: "t1", deviceID: "d1")
        #expect(stored.state == .failed)
    }

    @Test("a queued command expires at its expiry and is never sent afterwards")
    func expiry() async throws {
        let harness = CommandHarness()
        let command = try await harness.send(CommandRequest(method: "a", persistent: true, expiresInMs: 1000))
        harness.clock.advance(milliseconds: 999)
        await harness.service.sweep()
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .queued)
        harness.clock.advance(milliseconds: 1)
        await harness.service.sweep()
        let expired = try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1")
        #expect(expired.state == .expired)
        #expect(expired.timestamps[.expired] == command.createdAt.addingTimeInterval(1))
        harness.transport.setOnline("d1", .mqtt5)
        await harness.service.deliverQueued(tenantID: "t1", deviceID: "d1")
        #expect(harness.transport.sent.isEmpty)
    }

    @Test("an expired command found when the device comes expires instead of being sent")
    func expiryOnDelivery() async throws {
        let harness = CommandHarness()
        let command = try await harness.send(CommandRequest(method: "a", persistent: true, expiresInMs: 10))
        harness.clock.advance(milliseconds: 20)
        harness.transport.setOnline("d1", .mqtt5)
        await harness.service.deliverQueued(tenantID: "t1", deviceID: "d1")
        #expect(harness.transport.sent.isEmpty)
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .expired)
    }

    @Test("a sent two-way command times out after timeoutMs, and a late answer is refused")
    func timeout() async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt311)
        let command = try await harness.send(CommandRequest(method: "a", timeoutMs: 500))
        harness.clock.advance(milliseconds: 499)
        await harness.service.sweep()
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .sent)
        harness.clock.advance(milliseconds: 1)
        await harness.service.sweep()
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .timedOut)
        #expect(await harness.service.answer(commandID: command.id, tenantID: "t1", deviceID: "d1", outcome: .success(.null)) == .finished)
    }

    @Test("waiting for an answer ends with the answer, or with timed_out at the deadline")
    func waiting() async throws {
        let harness = CommandHarness(realTime: true)
        harness.transport.setOnline("d1", .mqtt5)
        let unanswered = try await harness.send(CommandRequest(method: "a", timeoutMs: 200))
        let timedOut = try await harness.service.awaitAnswer(unanswered)
        #expect(timedOut.state == .timedOut)
        let answered = try await harness.send(CommandRequest(method: "b", timeoutMs: 20_000))
        let service = harness.service
        Task {
            try await Task.sleep(for: .milliseconds(50))
            _ = await service.answer(commandID: answered.id, tenantID: "t1", deviceID: "d1", outcome: .success(.number(42)))
        }
        let started = Date()
        let finished = try await harness.service.awaitAnswer(answered)
        #expect(finished.state == .succeeded)
        #expect(finished.response == .number(42))
        #expect(Date().timeIntervalSince(started) < 15)
    }

    @Test("a one-way command succeeds when delivered; answers to it are refused")
    func oneWay() async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt5)
        let command = try await harness.send(CommandRequest(method: "blink", oneWay: true))
        #expect(command.state == .sent)
        #expect(try await harness.service.awaitAnswer(command).state == .sent)
        await harness.service.delivered(commandID: command.id)
        #expect(try await harness.service.command(id: command.id, tenantID: "t1", deviceID: "d1").state == .succeeded)
        #expect(await harness.service.answer(commandID: command.id, tenantID: "t1", deviceID: "d1", outcome: .success(.null)) == .finished)
    }

    @Test("rate limits per device and per tenant refuse with the time to wait, and refill")
    func rateLimits() async throws {
        let harness = CommandHarness(perDevice: 2, perTenant: 3)
        harness.transport.setOnline("d1", .mqtt5)
        harness.transport.setOnline("d2", .mqtt5)
        _ = try await harness.send(CommandRequest(method: "a"))
        _ = try await harness.send(CommandRequest(method: "a"))
        let deviceLimit = await #expect(throws: CommandError.self) { try await harness.send(CommandRequest(method: "a")) }
        #expect(deviceLimit?.code == .rateLimited)
        #expect(deviceLimit?.message.contains("device") == true)
        #expect((deviceLimit?.retryAfter ?? 0) > 0)
        #expect((deviceLimit?.retryAfter ?? 99) <= 30)
        // Another device has its own bucket, but the tenant's third token is the last.
        _ = try await harness.send(CommandRequest(method: "a"), device: "d2")
        let tenantLimit = await #expect(throws: CommandError.self) { try await harness.send(CommandRequest(method: "a"), device: "d2") }
        #expect(tenantLimit?.message.contains("tenant") == true)
        // Another tenant is not affected.
        harness.transport.setOnline("e1", .mqtt5)
        _ = try await harness.send(CommandRequest(method: "a"), device: "e1", tenant: "t2")
        // Half a minute refills one device token (2 a minute) and 1.5 tenant tokens.
        harness.clock.advance(milliseconds: 30_000)
        _ = try await harness.send(CommandRequest(method: "a"))
    }

    @Test("bad requests are refused naming the field", arguments: [
        (CommandRequest(method: ""), "method"),
        (CommandRequest(method: "a/b"), "method"),
        (CommandRequest(method: "x+"), "method"),
        (CommandRequest(method: "response"), "method"),
        (CommandRequest(method: String(repeating: "m", count: 129)), "method"),
        (CommandRequest(method: "a", timeoutMs: 0), "timeoutMs"),
        (CommandRequest(method: "a", timeoutMs: 600_001), "timeoutMs"),
        (CommandRequest(method: "a", persistent: true, expiresInMs: 0), "expiresInMs"),
        (CommandRequest(method: "a", persistent: true, expiresInMs: 7 * 24 * 3_600_000 + 1), "expiresInMs"),
        (CommandRequest(method: "a", expiresInMs: 1000), "expiresInMs"),
    ])
    func validation(_ request: CommandRequest, field: String) async throws {
        let harness = CommandHarness()
        harness.transport.setOnline("d1", .mqtt5)
        let error = await #expect(throws: CommandError.self) { try await harness.send(request) }
        #expect(error?.code == .invalid)
        #expect(error?.field == field)
        #expect(harness.transport.sent.isEmpty)
    }

    @Test("answer payloads: JSON is the response, {\"error\"} a failure, text a string, invalid UTF-8 nothing")
    func outcomes() {
        #expect(CommandOutcome.parse(Array(#"{"temp":21}"#.utf8)) == .success(.object(["temp": .number(21)])))
        #expect(CommandOutcome.parse(Array(#"{"error":"no"}"#.utf8)) == .failure("no"))
        #expect(CommandOutcome.parse(Array(#"{"error":"no","code":3}"#.utf8)) == .success(.object(["error": .string("no"), "code": .number(3)])))
        #expect(CommandOutcome.parse(Array("ok".utf8)) == .success(.string("ok")))
        #expect(CommandOutcome.parse([UInt8]()) == .success(.null))
        #expect(CommandOutcome.parse([0xFF, 0xFE]) == nil)
    }
}
