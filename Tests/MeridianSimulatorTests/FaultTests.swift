import MeridianCore
import MeridianSimulator
import Testing

@Suite("Fault specs")
struct FaultSpecTests {
    @Test("specs parse into kind, percentage, duration and profile")
    func parses() throws {
        #expect(try FaultSpec(parsing: "stuck:5%") == FaultSpec(kind: .stuck, percent: 5))
        #expect(
            try FaultSpec(parsing: "spikes:2.5%@factory-motor")
                == FaultSpec(kind: .spikes, percent: 2.5, profile: .factoryMotor)
        )
        #expect(
            try FaultSpec(parsing: "clock-skew:5%:30s")
                == FaultSpec(kind: .clockSkew, percent: 5, durationMilliseconds: 30_000)
        )
        #expect(
            try FaultSpec(parsing: " network-delay:20%:200ms@wearable ")
                == FaultSpec(kind: .networkDelay, percent: 20, durationMilliseconds: 200, profile: .wearable)
        )
        let list = try FaultSpec.parseList("dropouts:10%,disconnects:1%, packet-loss:5%,reboots:1%")
        #expect(list.map(\.kind) == [.dropouts, .disconnects, .packetLoss, .reboots])
        #expect(try FaultSpec.parseList("").isEmpty)
        for text in ["stuck:5%", "spikes:2%@factory-motor", "clock-skew:5%:30s", "network-delay:20%:200ms"] {
            #expect(try FaultSpec(parsing: text).description == text)
        }
    }

    @Test(
        "a bad spec is refused naming the part that is wrong",
        arguments: [
            ("spikez:2%", "spikez"),
            ("spikes", "spikes"),
            ("spikes:abc", "abc"),
            ("spikes:2", "2"),
            ("spikes:150%", "150%"),
            ("clock-skew:5%", "clock-skew"),
            ("clock-skew:5%:30x", "30x"),
            ("network-delay:5%:-3s", "-3s"),
            ("spikes:2%:30s", "30s"),
            ("spikes:2%@toaster", "toaster"),
            ("clock-skew:5%:30s:9", "9"),
            ("", ""),
        ]
    )
    func refusesBadSpec(text: String, part: String) {
        do {
            let spec = try FaultSpec(parsing: text)
            Issue.record("'\(text)' parsed as \(spec)")
        } catch {
            #expect(error.part == part)
            #expect(error.description.contains("'\(part)'") || part.isEmpty, "\(error)")
        }
    }
}

@Suite("Fault injection")
struct FaultInjectorTests {
    let sample: [String: JSONValue] = ["temperature": .number(21.5), "humidity": .number(40), "heating": .bool(true)]

    func injector(
        _ spec: String,
        device: Int = 0,
        seed: UInt64 = 77,
        profile: SimulatedProfile = .thermostat
    ) throws -> FaultInjector {
        FaultInjector(faults: [try FaultSpec(parsing: spec)], seed: seed, deviceIndex: device, profile: profile)
    }

    @Test(
        "per-tick faults happen at their configured rate",
        arguments: [
            ("spikes:2%", 0.02), ("dropouts:10%", 0.10), ("disconnects:1%", 0.01), ("packet-loss:5%", 0.05),
            ("reboots:1%", 0.01),
        ]
    )
    func perTickRates(spec: String, rate: Double) throws {
        var faults = try injector(spec)
        let ticks = 10_000
        var hits = 0
        for tick in 0..<ticks {
            let time = midnight + Int64(tick) * 1000
            let network = faults.tick()
            let faulted = faults.apply(sample, at: time)
            if faulted == nil || faulted?.spikedKey != nil || network.shouldDisconnect || network.shouldDrop
                || network.shouldReboot
            {
                hits += 1
            }
        }
        let expected = rate * Double(ticks)
        let tolerance = 5 * (expected * (1 - rate)).squareRoot()  // five standard deviations
        #expect(abs(Double(hits) - expected) < tolerance, "\(spec): \(hits) in \(ticks)")
    }

    @Test(
        "share-of-devices faults hit that share of the fleet",
        arguments: [
            ("stuck:5%", 0.05), ("clock-skew:10%:30s", 0.10), ("network-delay:20%:200ms", 0.20),
        ]
    )
    func fleetShare(spec: String, share: Double) throws {
        let devices = 10_000
        let affected = try (0..<devices).filter { !(try injector(spec, device: $0)).isEmpty }.count
        let expected = share * Double(devices)
        #expect(
            abs(Double(affected) - expected) < 5 * (expected * (1 - share)).squareRoot(),
            "\(spec): \(affected) of \(devices)"
        )
    }

    @Test("a fault for one profile leaves the others alone")
    func profileFilter() throws {
        #expect(try injector("spikes:100%@factory-motor", profile: .thermostat).isEmpty)
        var motor = try injector("spikes:100%@factory-motor", profile: .factoryMotor)
        let spiked = motor.apply(sample, at: midnight)
        #expect(spiked?.spikedKey != nil)
    }

    @Test("a spike is far out of range; a stuck sensor repeats its first reading; dropped samples are nil")
    func sampleFaults() throws {
        var spikes = try injector("spikes:100%")
        let spikedSample = spikes.apply(sample, at: midnight)
        let spiked = try #require(spikedSample)
        let key = try #require(spiked.spikedKey)
        #expect(abs(spiked.values[key]!.numberValue!) > 1000)
        #expect(spiked.values["heating"] == .bool(true))

        var stuck = try injector("stuck:100%")
        let firstSample = stuck.apply(sample, at: midnight)
        let first = try #require(firstSample)
        let stuckKey = try #require(first.stuckKey)
        for step in 1...50 {
            let moved = sample.mapValues { value in value.numberValue.map { .number($0 + Double(step)) } ?? value }
            let faultedSample = stuck.apply(moved, at: midnight + Int64(step) * 1000)
            let faulted = try #require(faultedSample)
            #expect(faulted.values[stuckKey] == sample[stuckKey])
            #expect(faulted.values.filter { $0.key != stuckKey } == moved.filter { $0.key != stuckKey })
        }

        var dropouts = try injector("dropouts:100%")
        let dropped = dropouts.apply(sample, at: midnight)
        #expect(dropped == nil)
    }

    @Test("clock skew shifts timestamps by up to its duration; network delay by 50–150 % of its duration")
    func skewAndDelay() throws {
        var skewed = try injector("clock-skew:100%:30s")
        let shift = skewed.clockSkewMilliseconds
        #expect(abs(shift) >= 15_000 && abs(shift) <= 30_000)
        let skewedSample = skewed.apply(sample, at: midnight)
        #expect(skewedSample?.time == midnight + shift)

        var slow = try injector("network-delay:100%:200ms")
        let delays = (0..<1000).map { _ in slow.tick().delayMilliseconds }
        #expect(delays.allSatisfy { (100...300).contains($0) })
        #expect(Set(delays).count > 50)
    }

    @Test("the same seed injects the same faults; a device's faults do not depend on the other faults listed")
    func reproducible() throws {
        let specs = try FaultSpec.parseList("spikes:5%,dropouts:5%,disconnects:5%,network-delay:50%:100ms")
        func run(_ faults: [FaultSpec], seed: UInt64) -> [String] {
            var injector = FaultInjector(faults: faults, seed: seed, deviceIndex: 3, profile: .smartMeter)
            return (0..<2000).map { tick in
                let network = injector.tick()
                let faulted = injector.apply(sample, at: midnight + Int64(tick) * 1000)
                let spiked = faulted?.spikedKey ?? "-"
                return "\(network.shouldDisconnect) \(network.delayMilliseconds) \(spiked) \(faulted == nil)"
            }
        }
        #expect(run(specs, seed: 1) == run(specs, seed: 1))
        #expect(run(specs, seed: 1) != run(specs, seed: 2))

        func spikeTicks(_ faults: [FaultSpec]) -> [Int] {
            var injector = FaultInjector(faults: faults, seed: 1, deviceIndex: 3, profile: .smartMeter)
            return (0..<2000).filter { injector.apply(sample, at: midnight + Int64($0) * 1000)?.spikedKey != nil }
        }
        #expect(spikeTicks([specs[0]]) == spikeTicks([specs[2], specs[0]]))
    }
}
