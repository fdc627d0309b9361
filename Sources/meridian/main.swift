// TEMPORARY: replaced by the configuration branch.
import Logging
import MeridianServer
import Foundation

var configuration = MeridianConfiguration()
var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "serve" { arguments.removeFirst() }
var i = 0
while i < arguments.count {
    let a = arguments[i]
    let v = i + 1 < arguments.count ? arguments[i + 1] : ""
    switch a {
    case "--bind": configuration.network.bind = v; i += 1
    case "--mqtt-port": configuration.network.mqttPort = Int(v)!; i += 1
    case "--http-port": configuration.network.httpPort = Int(v)!; i += 1
    case "--data-dir": configuration.dataDirectory = v; i += 1
    case "--log-level": configuration.logLevel = Logger.Level(rawValue: v)!; i += 1
    default: break
    }
    i += 1
}
let level = configuration.logLevel
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
}
let logger = Logger(label: "meridian")
try await MeridianApplication(configuration: configuration, logger: logger).run()
