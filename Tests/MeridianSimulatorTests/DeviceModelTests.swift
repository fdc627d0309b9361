import MeridianCore
import MeridianSimulator
import Testing

/// The documented keys and ranges of every profile's telemetry (docs/simulator.md).
let documentedRanges: [SimulatedProfile: [String: ClosedRange<Double>?]] = [
    .thermostat: ["temperature": 0...35, "humidity": 20...80, "setpoint": 5...30, "heating": nil, "mode": nil],
    .coldChainTruck: [
        "latitude": 43...54, "longitude": 4...12, "speed": 0...110, "heading": 0...360, "odometer": 0...1_000_000,
        "door": nil, "temperature": -30...40, "reefer": nil,
    ],
    .factoryMotor: ["rpm": 0...3000, "vibrationRms": 0...20, "temperature": 15...120, "load": 0...100, "running": nil],
    .wearable: [
        "heartRate": 40...200, "spo2": 88...100, "steps": 0...10_000_000, "activity": nil, "heartRateAlert": nil,
    ],
    .smartMeter: ["energy": 0...10_000_000, "power": 0...12_000, "voltage": 207...253, "current": 0...60, "rate": nil],
]

@Suite("Device models")
struct DeviceModelTests {
    @Test("the same seed gives the same samples twice", arguments: SimulatedProfile.allCases)
    func sameSeedSameSignal(profile: SimulatedProfile) {
        let first = samples(profile, seed: 2024, deviceIndex: 5, every: 30_000, count: 800)
        let second = samples(profile, seed: 2024, deviceIndex: 5, every: 30_000, count: 800)
        #expect(first == second)
    }

    @Test("other seeds and other devices give other samples", arguments: SimulatedProfile.allCases)
    func otherSeedOtherSignal(profile: SimulatedProfile) {
        let base = samples(profile, seed: 1, deviceIndex: 0)
        #expect(base != samples(profile, seed: 2, deviceIndex: 0))
        #expect(base != samples(profile, seed: 1, deviceIndex: 1))
    }

    @Test("a device's samples do not depend on the size of its fleet")
    func independentOfFleetSize() {
        let profiles = SimulatedProfile.allCases
        func fleetSamples(size: Int, watch: Int) -> [[String: JSONValue]] {
            var models = (0..<size).map { profiles[$0 % profiles.count].makeModel(deviceIndex: $0, seed: 99) }
            var watched: [[String: JSONValue]] = []
            for tick in 0..<200 {
                for index in models.indices {  // every device samples, interleaved, as the runner does
                    let sample = models[index].sample(at: midnight + Int64(tick) * 10_000)
                    if index == watch { watched.append(sample) }
                }
            }
            return watched
        }
        #expect(fleetSamples(size: 10, watch: 7) == fleetSamples(size: 60, watch: 7))
    }

    @Test("every value is finite and within its documented range", arguments: SimulatedProfile.allCases)
    func plausibleValues(profile: SimulatedProfile) throws {
        let ranges = try #require(documentedRanges[profile])
        for deviceIndex in 0..<4 {
            var model = profile.makeModel(deviceIndex: deviceIndex, seed: 11)
            // Three days at one sample a minute, then an hour at one a second, then a long gap.
            var times = (0..<(3 * 24 * 60)).map { midnight + Int64($0) * minute }
            times += (1...3600).map { midnight + 3 * day + Int64($0) * 1000 }
            times.append(midnight + 10 * day)
            for time in times {
                let sample = model.sample(at: time)
                #expect(Set(sample.keys) == Set(ranges.keys), "keys of \(profile)")
                for (key, value) in sample {
                    switch value {
                    case .number(let number):
                        let range = try #require(ranges[key] ?? nil, "\(profile).\(key) is a number")
                        #expect(number.isFinite && range.contains(number), "\(profile).\(key) = \(number)")
                    case .bool, .string:
                        #expect(ranges[key] == .some(nil), "\(profile).\(key) is not a number")
                    case .null, .array, .object:
                        Issue.record("\(profile).\(key) is \(value)")
                    }
                }
            }
        }
    }

    @Test(
        "unknown commands and bad parameters are refused with a message naming them",
        arguments: SimulatedProfile.allCases
    )
    func badCommands(profile: SimulatedProfile) {
        var model = profile.makeModel(deviceIndex: 0, seed: 1)
        _ = model.sample(at: midnight)
        do {
            _ = try model.handle(method: "selfDestruct", params: .emptyObject)
            Issue.record("an unknown command was accepted")
        } catch let error as SimulatedCommandError {
            #expect(error.code == .unknownMethod)
            #expect(error.message.contains("selfDestruct"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test(
        "desired settings of the wrong type, out of range or unknown are ignored",
        arguments: SimulatedProfile.allCases
    )
    func badDesiredIgnored(profile: SimulatedProfile) {
        var model = profile.makeModel(deviceIndex: 0, seed: 1)
        let before = model.reported
        model.applyDesired([
            "setpoint": .number(500), "targetTemperature": .string("cold"), "targetRpm": .number(-4),
            "heartRateAlert": .bool(true), "tariff": .string("free"), "colour": .string("blue"),
        ])
        #expect(model.reported == before)
    }
}

@Suite("Thermostat")
struct ThermostatTests {
    @Test("the room converges toward a setpoint changed through the twin")
    func followsSetpoint() {
        var model = ThermostatModel(deviceIndex: 0, random: SimulationRandom(seed: 5, deviceIndex: 0))
        _ = samples(of: &model, every: minute, count: 180)
        model.applyDesired(["setpoint": .number(25)])
        #expect(model.reported["setpoint"] == .number(25))
        let after = samples(of: &model, from: midnight + 3 * hour, every: minute, count: 6 * 60)
        let lastHour = after.suffix(60).map { $0.number("temperature") }
        let mean = lastHour.reduce(0, +) / Double(lastHour.count)
        #expect(abs(mean - 25) < 1, "mean temperature \(mean)")
        #expect(after.contains { $0["heating"] == .bool(true) })
        #expect(after.contains { $0["heating"] == .bool(false) }, "heating cycles on and off around the setpoint")
    }

    @Test("setSetpoint changes the setpoint; a value out of range is refused naming the parameter")
    func setSetpointCommand() throws {
        var model = ThermostatModel(deviceIndex: 0, random: SimulationRandom(seed: 5, deviceIndex: 0))
        #expect(
            try model.handle(method: "setSetpoint", params: .object(["value": .number(19.5)]))
                == .object(["setpoint": .number(19.5)])
        )
        #expect(model.sample(at: midnight)["setpoint"] == .number(19.5))
        #expect(
            throws: SimulatedCommandError.invalidParams("parameter 'value' must be between 5 and 30", field: "value")
        ) {
            try model.handle(method: "setSetpoint", params: .object(["value": .number(80)]))
        }
        #expect(throws: SimulatedCommandError.self) {
            try model.handle(method: "setSetpoint", params: .object(["value": .string("warm")]))
        }
    }

    @Test("boost heats above the setpoint for its duration, then the room returns to the setpoint")
    func boost() throws {
        var model = ThermostatModel(deviceIndex: 0, random: SimulationRandom(seed: 5, deviceIndex: 0))
        _ = samples(of: &model, every: minute, count: 180)
        let answer = try model.handle(method: "boost", params: .object(["minutes": .number(120)]))
        #expect(answer == .object(["boostUntil": .number(Double(midnight + 179 * minute + 120 * minute))]))
        let boosted = samples(of: &model, from: midnight + 180 * minute, every: minute, count: 120)
        #expect(boosted.map { $0.number("temperature") }.max()! > 22.5)
        let after = samples(of: &model, from: midnight + 300 * minute, every: minute, count: 240)
        #expect(abs(after.last!.number("temperature") - 21) < 1)
    }

    @Test("mode off keeps the heating off")
    func modeOff() {
        var model = ThermostatModel(deviceIndex: 0, random: SimulationRandom(seed: 5, deviceIndex: 0))
        model.applyDesired(["mode": .string("off"), "setpoint": .number(30)])
        let all = samples(of: &model, every: minute, count: 600)
        #expect(all.allSatisfy { $0["heating"] == .bool(false) })
    }
}

@Suite("Cold-chain truck")
struct ColdChainTruckTests {
    @Test("the truck moves along its route, and the cargo warms up while the door is open")
    func doorExcursions() {
        var model = ColdChainTruckModel(deviceIndex: 0, random: SimulationRandom(seed: 8, deviceIndex: 0))
        let day = samples(of: &model, every: 30_000, count: 2 * 24 * 120)
        #expect(day.contains { $0.number("speed") > 50 })
        #expect(Set(day.map { $0.number("latitude") }).count > 100, "the position changes")
        var rises: [Double] = []
        var index = 1
        while index < day.count {
            if day[index]["door"] == .string("open") && day[index - 1]["door"] == .string("closed") {
                let before = day[index - 1].number("temperature")
                var end = index
                while end + 1 < day.count && day[end + 1]["door"] == .string("open") { end += 1 }
                rises.append(day[end].number("temperature") - before)
                #expect(day[end].number("temperature") > before + 0.5, "an opening at sample \(index)")
                #expect(day[index...end].allSatisfy { $0.number("speed") == 0 }, "the door opens at a stop")
                index = end + 1
            } else {
                index += 1
            }
        }
        #expect(rises.count >= 3, "deliveries in two days: \(rises.count)")
        #expect(rises.reduce(0, +) / Double(max(rises.count, 1)) > 2, "rises \(rises)")
        // Away from the door openings the reefer holds the cargo near its 4 °C target.
        let closedTemperatures = day.filter { $0["door"] == .string("closed") }.map { $0.number("temperature") }
        let median = closedTemperatures.sorted()[closedTemperatures.count / 2]
        #expect(abs(median - 4) < 1.5, "median \(median)")
    }

    @Test("a locked door stays closed; the reefer's target follows the twin")
    func lockAndTarget() throws {
        var model = ColdChainTruckModel(deviceIndex: 0, random: SimulationRandom(seed: 8, deviceIndex: 0))
        _ = model.sample(at: midnight)
        if model.sample(at: midnight + 1000)["door"] == .string("closed") {
            #expect(try model.handle(method: "lockDoor", params: .emptyObject) == .object(["doorLocked": .bool(true)]))
        }
        model.applyDesired(["targetTemperature": .number(-18)])
        #expect(model.reported["targetTemperature"] == .number(-18))
        let later = samples(of: &model, from: midnight + 2000, every: minute, count: 24 * 60)
        #expect(later.allSatisfy { $0["door"] == .string("closed") })
        #expect(abs(later.last!.number("temperature") + 18) < 3)
        #expect(throws: SimulatedCommandError.self) { try model.handle(method: "reefer", params: .emptyObject) }
    }
}

@Suite("Factory motor")
struct FactoryMotorTests {
    @Test("vibration trends up over simulated days as the bearing wears; maintenance resets it")
    func wearDrift() throws {
        var model = FactoryMotorModel(deviceIndex: 0, random: SimulationRandom(seed: 3, deviceIndex: 0))
        func meanVibration(_ day: [[String: JSONValue]]) -> Double {
            day.map { $0.number("vibrationRms") }.reduce(0, +) / Double(day.count)
        }
        let firstDay = samples(of: &model, every: minute, count: 24 * 60)
        let wearAfterOneDay = try #require(model.reported["bearingWear"]?.numberValue)
        _ = samples(of: &model, from: midnight + day, every: 5 * minute, count: 8 * 24 * 12)
        let tenthDay = samples(of: &model, from: midnight + 9 * day, every: minute, count: 24 * 60)
        let wearAfterTenDays = try #require(model.reported["bearingWear"]?.numberValue)
        #expect(wearAfterTenDays > wearAfterOneDay)
        #expect(
            meanVibration(tenthDay) > meanVibration(firstDay) * 1.15,
            "\(meanVibration(firstDay)) → \(meanVibration(tenthDay))"
        )

        _ = try model.handle(method: "resetWear", params: .emptyObject)
        #expect(model.reported["bearingWear"] == .number(0))
        #expect(model.reported["health"] == .string("good"))
    }

    @Test("a worn-out bearing trips the motor until maintenance")
    func failure() throws {
        var model = FactoryMotorModel(deviceIndex: 0, random: SimulationRandom(seed: 3, deviceIndex: 0))
        _ = samples(of: &model, every: hour, count: 24 * 120)  // 120 days: past any bearing's life
        #expect(model.reported["health"] == .string("failed"))
        let stopped = samples(of: &model, from: midnight + 120 * day, every: minute, count: 30)
        #expect(stopped.last?["running"] == .bool(false))
        #expect(stopped.last?.number("rpm") == 0)
        _ = try model.handle(method: "resetWear", params: .emptyObject)
        let restarted = samples(of: &model, from: midnight + 121 * day, every: minute, count: 10)
        #expect(restarted.last?["running"] == .bool(true))
        #expect(restarted.last!.number("rpm") > 1300)
    }

    @Test("setSpeed and the desired targetRpm set the motor's speed")
    func speed() throws {
        var model = FactoryMotorModel(deviceIndex: 0, random: SimulationRandom(seed: 3, deviceIndex: 0))
        _ = try model.handle(method: "setSpeed", params: .object(["rpm": .number(900)]))
        #expect(abs(samples(of: &model, every: minute, count: 5).last!.number("rpm") - 900) < 40)
        model.applyDesired(["targetRpm": .number(2900)])
        #expect(
            abs(samples(of: &model, from: midnight + hour, every: minute, count: 5).last!.number("rpm") - 2900) < 100
        )
        #expect(throws: SimulatedCommandError.self) {
            try model.handle(method: "setSpeed", params: .object(["rpm": .number(9000)]))
        }
    }
}

@Suite("Wearable")
struct WearableTests {
    @Test("steps only increase; heart rate is higher running than asleep")
    func activity() {
        var model = WearableModel(deviceIndex: 0, random: SimulationRandom(seed: 4, deviceIndex: 0))
        let all = samples(of: &model, every: 30_000, count: 4 * 24 * 120)
        let steps = all.map { $0.number("steps") }
        #expect(zip(steps, steps.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(steps.last! > 1000)
        func meanHeartRate(_ activity: String) -> Double {
            let rates = all.filter { $0["activity"] == .string(activity) }.map { $0.number("heartRate") }
            return rates.reduce(0, +) / Double(max(rates.count, 1))
        }
        #expect(all.contains { $0["activity"] == .string("running") })
        #expect(all.contains { $0["activity"] == .string("walking") })
        #expect(meanHeartRate("running") > meanHeartRate("sleep") + 40)
    }

    @Test("vibrate answers with its pattern and refuses an unknown one")
    func vibrate() throws {
        var model = WearableModel(deviceIndex: 0, random: SimulationRandom(seed: 4, deviceIndex: 0))
        #expect(
            try model.handle(method: "vibrate", params: .object(["pattern": .string("double")]))
                == .object(["vibrated": .string("double")])
        )
        #expect(model.reported["vibrations"] == .number(1))
        #expect(throws: SimulatedCommandError.self) {
            try model.handle(method: "vibrate", params: .object(["pattern": .string("earthquake")]))
        }
    }
}

@Suite("Smart meter")
struct SmartMeterTests {
    @Test("energy never decreases and grows by the integrated power; the evening uses more than the night")
    func energy() throws {
        var model = SmartMeterModel(deviceIndex: 0, random: SimulationRandom(seed: 6, deviceIndex: 0))
        let all = samples(of: &model, every: minute, count: 2 * 24 * 60)
        let energy = all.map { $0.number("energy") }
        #expect(zip(energy, energy.dropFirst()).allSatisfy { $0 <= $1 })
        let used = energy.last! - energy.first!
        let integrated = all.dropFirst().map { $0.number("power") / 60_000 }.reduce(0, +)
        #expect(abs(used - integrated) < integrated * 0.1, "\(used) kWh vs \(integrated)")
        let night = all[(3 * 60)..<(4 * 60)].map { $0.number("power") }.reduce(0, +)
        let evening = all[(19 * 60)..<(20 * 60)].map { $0.number("power") }.reduce(0, +)
        #expect(evening > night * 2)
        let answer = try model.handle(method: "readNow", params: .emptyObject)
        #expect(answer["energy"] == all.last?["energy"])
    }

    @Test("the dual tariff reports off-peak at night")
    func tariff() {
        var model = SmartMeterModel(deviceIndex: 0, random: SimulationRandom(seed: 6, deviceIndex: 0))
        #expect(model.sample(at: midnight + 2 * hour)["rate"] == .string("standard"))
        model.applyDesired(["tariff": .string("dual")])
        #expect(model.reported["tariff"] == .string("dual"))
        #expect(model.sample(at: midnight + 3 * hour)["rate"] == .string("offpeak"))
        #expect(model.sample(at: midnight + 12 * hour)["rate"] == .string("peak"))
    }
}
