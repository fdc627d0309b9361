// A thermostat on the Meridian device SDK: it reports the room temperature every few seconds,
// heats toward the setpoint an operator sets in its twin, and answers two commands.
//
//   meridian serve                                     # in another terminal
//   meridian device create --name thermostat-1        # prints the device id
//   meridian credentials create <device-id>            # prints a token
//   swift run thermostat --host localhost --token <token> [--device-id <device-id>] [--interval 5]
//
// Then set the setpoint: curl -X PATCH -H "Authorization: Bearer $KEY" \
//   -d '{"desired": {"setpoint": 23}}' localhost:8080/api/v1/devices/<device-id>/twin
import Foundation
import MeridianCore
import MeridianDevice

/// Command-line options: `--host`, `--port`, `--token`, `--device-id`, `--interval` (seconds).
struct Options {
    var host = "localhost"
    var port: Int?
    var token: String?
    var deviceID: String?
    var interval = 5.0

    static let usage = """
        usage: thermostat --token TOKEN [--host HOST] [--port PORT] [--device-id ID] [--interval SECONDS]
        """

    init(_ arguments: [String]) throws {
        var rest = arguments[...]
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { throw OptionError("\(flag) needs a value") }
            switch flag {
            case "--host": host = value
            case "--port":
                guard let port = Int(value), (1...65535).contains(port) else { throw OptionError("--port: not a port: \(value)") }
                self.port = port
            case "--token": token = value
            case "--device-id": deviceID = value
            case "--interval":
                guard let seconds = Double(value), seconds > 0 else { throw OptionError("--interval: not a positive number: \(value)") }
                interval = seconds
            default: throw OptionError("unknown option \(flag)")
            }
        }
        if token == nil { throw OptionError("--token is required") }
    }
}

struct OptionError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The room: it cools toward the outside temperature and warms while the heating is on.
actor Room {
    var temperature = 19.0
    var setpoint = 21.0
    var heating = false

    func step(seconds: Double) -> [String: JSONValue] {
        let outside = 8.0
        temperature += (outside - temperature) * 0.002 * seconds + (heating ? 0.05 * seconds : 0)
        if temperature < setpoint - 0.3 { heating = true }
        if temperature > setpoint + 0.3 { heating = false }
        return ["temperature": .number((temperature * 10).rounded() / 10), "setpoint": .number(setpoint), "heating": .bool(heating)]
    }

    func set(setpoint: Double) { self.setpoint = setpoint }
    func boost() { temperature += 1 }
}

let options: Options
do {
    options = try Options(Array(CommandLine.arguments.dropFirst()))
} catch {
    FileHandle.standardError.write(Data("thermostat: \(error)\n\(Options.usage)\n".utf8))
    exit(2)
}

var configuration = MeridianDevice.Configuration(host: options.host, port: options.port, credentials: .accessToken(options.token ?? ""))
configuration.deviceID = options.deviceID
let device = try MeridianDevice(configuration: configuration)
let room = Room()

await device.onDesiredChange { desired, version in
    if let setpoint = desired["setpoint"]?.numberValue, (5...30).contains(setpoint) {
        await room.set(setpoint: setpoint)
        print("setpoint \(setpoint) (twin version \(version))")
        _ = try? await device.report(["setpoint": .number(setpoint)])
    }
}
await device.onCommand("boost") { _ in
    await room.boost()
    return ["boosted": true]
}
await device.onCommand("setSetpoint") { params in
    guard let value = params["value"]?.numberValue, (5...30).contains(value) else {
        throw OptionError("params.value: a number from 5 to 30")
    }
    await room.set(setpoint: value)
    return ["setpoint": .number(value)]
}

do {
    try await device.connect()
} catch {
    FileHandle.standardError.write(Data("thermostat: \(error)\n".utf8))
    exit(1)
}
_ = try? await device.report(["firmware": "thermostat-example 1.0", "setpoint": 21])
print("connected to \(options.host); sending every \(options.interval) s (Ctrl-C stops)")
while true {
    let values = await room.step(seconds: options.interval)
    try await device.send(values)
    print("sent", values.mapValues(\.jsonText))
    try await Task.sleep(for: .seconds(options.interval))
}
