import Foundation
import MeridianCore

/// A refrigerated delivery truck.
///
/// The truck drives a closed route through a few cities at 60–90 km/h (with traffic slow-downs),
/// stops 20–45 minutes at every waypoint, and opens its door there for 5–15 minutes unless the
/// door is locked. The reefer pulls the cargo temperature toward `targetTemperature`; while the
/// door is open warm air pulls it up toward the outside temperature (a summer's, 14–26 °C), so
/// every delivery shows an excursion of a few degrees.
///
/// Telemetry: `latitude`, `longitude` (degrees), `speed` (km/h, 0…110), `heading` (degrees, 0…360),
/// `odometer` (km, cumulative), `door` ("open"/"closed"), `temperature` (°C, −30…40), `reefer`
/// (bool). Desired: `targetTemperature` (−25…15, default 4). Commands: `lockDoor {"locked": bool}`
/// (default true; refused while the door is open), `reefer {"on": bool}`.
public struct ColdChainTruckModel: DeviceModel {
    public static let profile = SimulatedProfile.coldChainTruck
    static let targetRange = -25.0...15.0
    static let commands = ["lockDoor", "reefer"]

    struct Waypoint {
        var name: String
        var latitude: Double
        var longitude: Double
    }

    static let routes: [(name: String, stops: [Waypoint])] = [
        (
            "north-germany",
            [
                Waypoint(name: "Hamburg", latitude: 53.5511, longitude: 9.9937),
                Waypoint(name: "Hannover", latitude: 52.3759, longitude: 9.7320),
                Waypoint(name: "Kassel", latitude: 51.3127, longitude: 9.4797),
                Waypoint(name: "Erfurt", latitude: 50.9848, longitude: 11.0299),
                Waypoint(name: "Magdeburg", latitude: 52.1205, longitude: 11.6276),
            ]
        ),
        (
            "benelux",
            [
                Waypoint(name: "Rotterdam", latitude: 51.9244, longitude: 4.4777),
                Waypoint(name: "Antwerp", latitude: 51.2194, longitude: 4.4025),
                Waypoint(name: "Brussels", latitude: 50.8503, longitude: 4.3517),
                Waypoint(name: "Liège", latitude: 50.6326, longitude: 5.5797),
                Waypoint(name: "Eindhoven", latitude: 51.4416, longitude: 5.4697),
                Waypoint(name: "Utrecht", latitude: 52.0907, longitude: 5.1214),
            ]
        ),
        (
            "rhone",
            [
                Waypoint(name: "Lyon", latitude: 45.7640, longitude: 4.8357),
                Waypoint(name: "Grenoble", latitude: 45.1885, longitude: 5.7245),
                Waypoint(name: "Valence", latitude: 44.9334, longitude: 4.8924),
                Waypoint(name: "Avignon", latitude: 43.9493, longitude: 4.8055),
                Waypoint(name: "Marseille", latitude: 43.2965, longitude: 5.3698),
                Waypoint(name: "Nîmes", latitude: 43.8367, longitude: 4.3601),
            ]
        ),
    ]

    private var random: SimulationRandom
    private let deviceIndex: Int
    private let routeIndex: Int
    private let cruiseSpeed: Double

    private var leg: Int
    private var kilometresOnLeg: Double
    private var odometer: Double
    private var speed = 0.0
    private var slowdownRemaining = 0.0
    /// Seconds left at the current stop (0 while driving) and the door's opening window in it.
    private var stopRemaining = 0.0
    private var doorOpensAt = 0.0
    private var doorClosesAt = 0.0
    private var doorOpen = false
    private var doorLocked = false
    private var reeferOn = true
    private var targetTemperature = 4.0
    private var temperature: Double
    private var lastTime: Int64?

    public init(deviceIndex: Int, random: SimulationRandom) {
        var random = random
        self.deviceIndex = deviceIndex
        routeIndex = random.integer(in: 0...(Self.routes.count - 1))
        cruiseSpeed = random.uniform(in: 70...88)
        let stops = Self.routes[routeIndex].stops
        leg = random.integer(in: 0...(stops.count - 1))
        kilometresOnLeg = random.uniform() * Self.legLength(stops, leg)
        odometer = ModelMath.round(random.uniform(in: 20_000...400_000), 0)
        temperature = 4 + random.normal(standardDeviation: 0.3)
        self.random = random
    }

    private static func legLength(_ stops: [Waypoint], _ leg: Int) -> Double {
        let from = stops[leg]
        let to = stops[(leg + 1) % stops.count]
        return max(haversineKilometres(from.latitude, from.longitude, to.latitude, to.longitude), 1)
    }

    static func haversineKilometres(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
        let rad = Double.pi / 180
        let dLat = (lat2 - lat1) * rad
        let dLon = (lon2 - lon1) * rad
        let a = sin(dLat / 2) * sin(dLat / 2) + cos(lat1 * rad) * cos(lat2 * rad) * sin(dLon / 2) * sin(dLon / 2)
        return 6371 * 2 * atan2(a.squareRoot(), max(1 - a, 0).squareRoot())
    }

    public mutating func sample(at time: Int64) -> [String: JSONValue] {
        let (count, step) = ModelMath.steps(ModelMath.elapsedSeconds(from: lastTime, to: time), maxStep: 10)
        let start = lastTime ?? time
        for index in 0..<count {
            advance(step, at: start + Int64(Double(index + 1) * step * 1000))
        }
        lastTime = time

        let stops = Self.routes[routeIndex].stops
        let from = stops[leg]
        let to = stops[(leg + 1) % stops.count]
        let fraction = ModelMath.clamp(kilometresOnLeg / Self.legLength(stops, leg), 0...1)
        let latitude =
            from.latitude + (to.latitude - from.latitude) * fraction + random.normal(standardDeviation: 0.00004)
        let longitude =
            from.longitude + (to.longitude - from.longitude) * fraction + random.normal(standardDeviation: 0.00004)
        let rad = Double.pi / 180
        let y = sin((to.longitude - from.longitude) * rad) * cos(to.latitude * rad)
        let x =
            cos(from.latitude * rad) * sin(to.latitude * rad)
            - sin(from.latitude * rad) * cos(to.latitude * rad) * cos((to.longitude - from.longitude) * rad)
        var heading = atan2(y, x) / rad
        if heading < 0 { heading += 360 }
        let measured = ModelMath.clamp(temperature + random.normal(standardDeviation: 0.1), -30...40)
        return [
            "latitude": .number(ModelMath.round(latitude, 6)),
            "longitude": .number(ModelMath.round(longitude, 6)),
            "speed": .number(ModelMath.round(ModelMath.clamp(speed, 0...110), 1)),
            "heading": .number(ModelMath.round(ModelMath.clamp(heading, 0...360), 1)),
            "odometer": .number(ModelMath.round(odometer, 2)),
            "door": .string(doorOpen ? "open" : "closed"),
            "temperature": .number(ModelMath.round(measured, 2)),
            "reefer": .bool(reeferOn),
        ]
    }

    private mutating func advance(_ dt: Double, at time: Int64) {
        if stopRemaining > 0 {
            speed = 0
            stopRemaining = max(stopRemaining - dt, 0)
            doorOpen = !doorLocked && stopRemaining <= doorOpensAt && stopRemaining > doorClosesAt
            if stopRemaining == 0 {
                doorOpen = false
                leg = (leg + 1) % Self.routes[routeIndex].stops.count
                kilometresOnLeg = 0
            }
        } else {
            if slowdownRemaining > 0 {
                slowdownRemaining = max(slowdownRemaining - dt, 0)
            } else if random.bernoulli(dt / 3600 * 0.5) {  // about one traffic jam every two hours
                slowdownRemaining = random.uniform(in: 300...1200)
            }
            let target = slowdownRemaining > 0 ? 15.0 : cruiseSpeed
            speed +=
                (target - speed) * ModelMath.relax(dt, tau: 60)
                + random.normal(standardDeviation: 0.8 * dt.squareRoot())
            speed = ModelMath.clamp(speed, 3...105)
            let distance = speed * dt / 3600
            kilometresOnLeg += distance
            odometer += distance
            let length = Self.legLength(Self.routes[routeIndex].stops, leg)
            if kilometresOnLeg >= length {
                kilometresOnLeg = length
                speed = 0
                // A delivery: stop 20–45 min; the door opens 2 min in, for 5–15 min.
                stopRemaining = random.uniform(in: 1200...2700)
                doorOpensAt = stopRemaining - 120
                doorClosesAt = doorOpensAt - random.uniform(in: 300...900)
            }
        }

        // A summer: 14 °C at night, 26 °C in the afternoon.
        let outside = 20 + 6 * ModelMath.dailyCycle(time, peakHour: 15)
        var change = (outside - temperature) * ModelMath.relax(dt, tau: doorOpen ? 1500 : 24 * 3600)
        if reeferOn { change += (targetTemperature - temperature) * ModelMath.relax(dt, tau: 1200) }
        temperature = ModelMath.clamp(
            temperature + change + random.normal(standardDeviation: 0.003 * dt.squareRoot()),
            -30...40
        )
    }

    public var reported: [String: JSONValue] {
        [
            "firmware": .string("reefer-telematics-5.0.4"),
            "serial": .string("CT-\(200_000 + deviceIndex)"),
            "route": .string(Self.routes[routeIndex].name),
            "targetTemperature": .number(targetTemperature),
            "reefer": .bool(reeferOn),
            "doorLocked": .bool(doorLocked),
        ]
    }

    public mutating func applyDesired(_ desired: [String: JSONValue]) {
        if let value = Params.desiredNumber(desired, "targetTemperature", in: Self.targetRange) {
            targetTemperature = value
        }
    }

    public mutating func handle(method: String, params: JSONValue) throws -> JSONValue {
        switch method {
        case "lockDoor":
            let locked = try Params.optionalBool(params, "locked") ?? true
            if locked && doorOpen { throw SimulatedCommandError.unavailable("the door is open") }
            doorLocked = locked
            return .object(["doorLocked": .bool(doorLocked)])
        case "reefer":
            guard let on = try Params.optionalBool(params, "on") else {
                throw SimulatedCommandError.invalidParams("parameter 'on' is required (true or false)", field: "on")
            }
            reeferOn = on
            return .object(["reefer": .bool(reeferOn)])
        default:
            throw SimulatedCommandError.unknownMethod(method, known: Self.commands)
        }
    }
}
