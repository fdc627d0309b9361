import Foundation
import NIOCore

/// How many event-loop threads to run.
enum EventLoopThreads {
    /// The cores this process may run on: the smaller of NIO's count (which honours cgroup
    /// limits) and the CPU affinity mask (which NIO ignores), so `taskset -c 0 meridian serve`
    /// runs one loop instead of two threads fighting over one core.
    static var available: Int {
        let nio = System.coreCount
        if let allowed = affinityCount(), allowed > 0 { return min(nio, allowed) }
        return nio
    }

    /// CPUs in this process's affinity mask, from `/proc/self/status` (`Cpus_allowed`, a
    /// comma-separated hex mask); `nil` where that is not available.
    static func affinityCount(status path: String = "/proc/self/status") -> Int? {
        guard let status = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            let mask = line.dropFirst("Cpus_allowed:".count).trimmingCharacters(in: .whitespaces)
            var count = 0
            for character in mask where character != "," {
                guard let nibble = character.hexDigitValue else { return nil }
                count += nibble.nonzeroBitCount
            }
            return count
        }
        return nil
    }

    /// The configured thread count, or one per available core when 0.
    static func resolve(_ configured: Int) -> Int {
        configured > 0 ? configured : max(1, available)
    }
}
