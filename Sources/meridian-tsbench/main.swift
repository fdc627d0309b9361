// meridian-tsbench: the time-series engine's benchmarks, driven by scripts/bench-telemetry.
// Not installed and not part of the product: a release build of it measures TimeSeriesEngine
// through its public API only. Each run does one scenario in a fresh directory and prints one
// JSON object on standard output; the script pins it to one core, repeats it and writes the
// results to docs/benchmarks.md.
//
//   meridian-tsbench append  --dir D [--devices 1000] [--keys 10] [--batches 2000]
//   meridian-tsbench durable --dir D [--devices 1000] [--keys 10] [--batches 300]
//   meridian-tsbench size    --dir D [--devices 10] [--keys 10] [--days 1] [--jitter MS] [--csv FILE]
//   meridian-tsbench day     --dir D            (queries on what `size` left in D)
//   meridian-tsbench year    --dir D [--days 365]
//   meridian-tsbench latest  --dir D [--devices 1000] [--keys 10]
//
// With `--postgres URL` the engine keeps its chunks, rollups and latest values in that PostgreSQL
// database (PostgresChunkStore) and only its WAL in the directory.
import Dispatch
import Foundation
import Logging
import MeridianCore
import MeridianStorage

#if canImport(Glibc)
import Glibc
#endif

// MARK: - arguments, clock, output

var options: [String: String] = [:]
let arguments = Array(CommandLine.arguments.dropFirst())
let scenario = arguments.first ?? ""
var index = 1
while index < arguments.count {
    let name = arguments[index]
    guard name.hasPrefix("--"), index + 1 < arguments.count else {
        FileHandle.standardError.write(Data("meridian-tsbench: unexpected argument \(name)\n".utf8))
        exit(2)
    }
    options[String(name.dropFirst(2))] = arguments[index + 1]
    index += 2
}

@MainActor func option(_ name: String, _ fallback: Int) -> Int {
    guard let text = options[name] else { return fallback }
    guard let value = Int(text), value >= 0 else {
        FileHandle.standardError.write(Data("meridian-tsbench: --\(name) needs a whole number\n".utf8))
        exit(2)
    }
    return value
}

guard let directory = options["dir"] else {
    FileHandle.standardError.write(
        Data("usage: meridian-tsbench append|durable|size|day|year|latest --dir DIR [options]\n".utf8)
    )
    exit(2)
}

/// Monotonic nanoseconds.
@inline(__always)
func now() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// CPU time of the whole process (every thread: SQLite's writes run on GRDB's queue), nanoseconds.
/// On a shared machine this shows what the work costs even when another process takes the core.
@inline(__always)
func cpuNow() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

func seconds(_ nanoseconds: UInt64) -> Double { Double(nanoseconds) / 1e9 }

@MainActor func emit(_ object: [String: Any]) {
    var object = object
    object["scenario"] = scenario
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
        FileHandle.standardError.write(Data("meridian-tsbench: cannot encode the result\n".utf8))
        exit(1)
    }
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

var logger = Logger(label: "meridian.tsbench")
logger.logLevel = .warning

/// Where a `--postgres` engine keeps its chunks (nil: SQLite in the directory).
final class PostgresStoreBox: @unchecked Sendable {
    var store: PostgresChunkStore?
    var error: (any Error)?
}

let postgresStore: PostgresChunkStore? = {
    guard let url = options["postgres"] else { return nil }
    let configuration: PostgresConfiguration
    do {
        configuration = try PostgresConfiguration(url: url)
    } catch {
        FileHandle.standardError.write(Data("meridian-tsbench: --postgres: \(error)\n".utf8))
        exit(2)
    }
    // The pool runs on Swift's cooperative pool until the process exits; the engine's calls block
    // this (main) thread, never a thread of that pool.
    let database = PostgresDatabase(configuration: configuration, logger: logger)
    Task.detached { try? await database.run() }
    let box = PostgresStoreBox()
    let ready = DispatchSemaphore(value: 0)
    Task.detached {
        do { box.store = try await PostgresChunkStore(database: database) } catch { box.error = error }
        ready.signal()
    }
    ready.wait()
    if let error = box.error {
        FileHandle.standardError.write(Data("meridian-tsbench: \(error)\n".utf8))
        exit(1)
    }
    return box.store
}()

@MainActor func openEngine() -> TimeSeriesEngine {
    do {
        if let postgresStore {
            return try TimeSeriesEngine(directory: directory, store: postgresStore, logger: logger)
        }
        return try TimeSeriesEngine(directory: directory, logger: logger)
    } catch {
        FileHandle.standardError.write(Data("meridian-tsbench: \(error)\n".utf8))
        exit(1)
    }
}

func run(_ what: String, _ body: () throws -> Void) {
    do { try body() } catch {
        FileHandle.standardError.write(Data("meridian-tsbench: \(what) failed: \(error)\n".utf8))
        exit(1)
    }
}

/// Files under the engine's directory and their sizes.
@MainActor func filesOnDisk() -> [String: Int] {
    var result: [String: Int] = [:]
    let enumerator = FileManager.default.enumerator(atPath: directory)
    while let name = enumerator?.nextObject() as? String {
        let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
        if attributes?[.type] as? FileAttributeType == .typeRegular {
            result[name] = attributes?[.size] as? Int ?? 0
        }
    }
    return result
}

/// Timing summary of repeated calls (ms).
func summary(_ samples: [UInt64]) -> [String: Any] {
    let sorted = samples.sorted()
    func at(_ q: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))]) / 1e6 }
    return ["median_ms": at(0.5), "p90_ms": at(0.9), "min_ms": at(0), "max_ms": at(1), "runs": sorted.count]
}

// MARK: - data: the sensor model of Tests/MeridianStorageTests/TimeSeriesCodec/SensorSignal.swift

/// SplitMix64 (Steele et al. 2014), as in the codec tests: the same data on every run.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    mutating func gaussian() -> Double {
        var sum = 0.0
        for _ in 0..<12 { sum += unit() }
        return sum - 6
    }
}

/// One series of the codec tests' sensor signal: a base with a slow daily sine and gaussian
/// noise, rounded to `decimals` as a device printing JSON would.
struct Signal {
    var base = 21.0
    var dailyAmplitude = 2.0
    var noise = 0.05
    var decimals = 2
    var random: SplitMix64
    let scale: Double

    init(base: Double, decimals: Int, seed: UInt64) {
        self.base = base
        self.decimals = decimals
        random = SplitMix64(state: seed)
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        self.scale = scale
    }

    mutating func value(at elapsed: Int64) -> Double {
        let phase = Double(elapsed) / 86_400_000.0 * 2 * Double.pi
        let exact = base + dailyAmplitude * sin(phase) + noise * random.gaussian()
        return (exact * scale).rounded() / scale
    }
}

let keyNames = ["temperature", "humidity", "pressure", "co2", "voltage", "current", "power", "rssi", "battery", "lux"]
func keyName(_ k: Int) -> String { k < keyNames.count ? keyNames[k] : "key\(k)" }
func deviceName(_ d: Int) -> String { "dev-" + String(repeating: "0", count: max(0, 5 - String(d).count)) + String(d) }

/// 2023-11-14T22:13:20Z, as in the codec tests.
let start: Int64 = 1_700_000_000_000

/// One message per device at `timestamp`, every key one sample (values from a small pool: the
/// append benchmarks measure the engine, not the data's compressibility).
func messages(devices: Range<Int>, keys: Int, timestamp: Int64, pool: [Double], offset: Int) -> [DeviceMessage] {
    devices.map { d in
        var samples: [TelemetrySample] = []
        samples.reserveCapacity(keys)
        for k in 0..<keys {
            samples.append(
                TelemetrySample(
                    key: keyName(k),
                    timestamp: timestamp,
                    value: .number(pool[(offset &+ d &* 31 &+ k) % pool.count])
                )
            )
        }
        return DeviceMessage(
            tenantID: "tenant",
            deviceID: deviceName(d),
            receivedAt: timestamp,
            kind: .telemetry(samples)
        )
    }
}

func valuePool() -> [Double] {
    var signal = Signal(base: 21, decimals: 2, seed: 7)
    return (0..<4096).map { signal.value(at: Int64($0) * 1000) }
}

// MARK: - scenarios

switch scenario {
case "append", "durable":
    // Every batch: `perBatch` messages (one per device, in turn) of `keys` samples each; a
    // device's timestamps advance by 1 s per message. append: one message per device per batch,
    // not durable. durable: 1,000 messages per batch, one WAL fsync each.
    let durable = scenario == "durable"
    let devices = option("devices", 1000)
    let keys = option("keys", 10)
    // 2,048 rounds: every series seals exactly two chunks of 1,024 (durable: one, in 1,024).
    let batches = option("batches", durable ? 1024 : 2048)
    let perBatch = option("messages-per-batch", durable ? 1000 : devices)
    let chunkSamples = TimeSeriesEngine.Configuration().chunkSamples
    let pool = valuePool()
    let engine = openEngine()
    var total: UInt64 = 0
    var headsTime: UInt64 = 0
    var headsSamples = 0
    var cpuTotal: UInt64 = 0
    var headsCPU: UInt64 = 0
    var samples = 0
    var worst: UInt64 = 0
    var cursor = 0  // messages written so far
    for batch in 0..<batches {
        var batchMessages: [DeviceMessage] = []
        batchMessages.reserveCapacity(perBatch)
        var remaining = perBatch
        while remaining > 0 {
            let d = cursor % devices
            let round = cursor / devices
            let take = min(remaining, devices - d)
            batchMessages += messages(
                devices: d..<(d + take),
                keys: keys,
                timestamp: start + Int64(round) * 1000,
                pool: pool,
                offset: batch
            )
            cursor += take
            remaining -= take
        }
        let batchSamples = batchMessages.count * keys
        let c0 = cpuNow()
        let t0 = now()
        run("append") { try engine.append(batchMessages, durable: durable) }
        let elapsed = now() - t0
        let cpu = cpuNow() - c0
        total += elapsed
        cpuTotal += cpu
        worst = max(worst, elapsed)
        samples += batchSamples
        // Before any series fills its first chunk, appends only go to the WAL and the heads.
        if (cursor - 1) / devices < chunkSamples - 1 {
            headsTime += elapsed
            headsCPU += cpu
            headsSamples += batchSamples
        }
    }
    let t0 = now()
    run("checkpoint") { try engine.checkpoint() }
    let checkpoint = now() - t0
    // The disk, measured beside the engine: 50 appends of 160 KB (about one batch's WAL record)
    // to a file in the same directory, each followed by fdatasync as the WAL does.
    var probe: [UInt64] = []
    if durable {
        let path = directory + "/fsync-probe"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        let block = [UInt8](repeating: 0x5A, count: 160_000)
        if fd >= 0 {
            for _ in 0..<50 {
                _ = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                let s0 = now()
                fdatasync(fd)
                probe.append(now() - s0)
            }
            close(fd)
            unlink(path)
        }
    }
    emit([
        "fsync_probe": probe.isEmpty ? [:] : summary(probe),
        "devices": devices, "keys": keys, "batches": batches, "messages_per_batch": perBatch, "durable": durable,
        "samples": samples, "seconds": seconds(total), "samples_per_s": Double(samples) / seconds(total),
        "heads_only_samples": headsSamples,
        "heads_only_samples_per_s": headsTime > 0 ? Double(headsSamples) / seconds(headsTime) : 0,
        "cpu_seconds": seconds(cpuTotal), "samples_per_cpu_s": Double(samples) / seconds(cpuTotal),
        "heads_only_samples_per_cpu_s": headsCPU > 0 ? Double(headsSamples) / seconds(headsCPU) : 0,
        "worst_batch_ms": Double(worst) / 1e6, "final_checkpoint_s": seconds(checkpoint),
        "chunk_samples": chunkSamples,
    ])

case "size":
    // `devices` × `keys` series of 1 Hz data for `days`, arriving as the devices would send it
    // (every second a message per device with all its keys); keys alternate 2 and 3 decimals.
    let devices = option("devices", 10)
    let keys = option("keys", 10)
    let days = option("days", 1)
    let jitter = Int64(option("jitter", 0))
    let seconds1 = days * 86_400
    var signals: [Signal] = []
    for d in 0..<devices {
        for k in 0..<keys {
            signals.append(
                Signal(
                    base: 15 + Double((d * 7 + k * 3) % 20),
                    decimals: k % 2 == 0 ? 2 : 3,
                    seed: UInt64(d * 1000 + k + 1)
                )
            )
        }
    }
    var jitterRandom = SplitMix64(state: 99)
    var lastStamp = [Int64](repeating: .min, count: devices)
    var csv: FileHandle?
    if let path = options["csv"] {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        csv = FileHandle(forWritingAtPath: path)
    }
    var csvBuffer = ""
    let engine = openEngine()
    var appendTime: UInt64 = 0
    var batch: [DeviceMessage] = []
    let secondsPerBatch = 60
    batch.reserveCapacity(devices * secondsPerBatch)
    for second in 0..<seconds1 {
        for d in 0..<devices {
            var timestamp = start + Int64(second) * 1000
            if jitter > 0 { timestamp += Int64(jitterRandom.next() % UInt64(2 * jitter + 1)) - jitter }
            if timestamp <= lastStamp[d] { timestamp = lastStamp[d] + 1 }
            lastStamp[d] = timestamp
            var samples: [TelemetrySample] = []
            samples.reserveCapacity(keys)
            for k in 0..<keys {
                let value = signals[d * keys + k].value(at: timestamp - start)
                samples.append(TelemetrySample(key: keyName(k), timestamp: timestamp, value: .number(value)))
                if csv != nil { csvBuffer += "\(d * keys + k + 1),\(timestamp),\(value)\n" }
            }
            batch.append(
                DeviceMessage(
                    tenantID: "tenant",
                    deviceID: deviceName(d),
                    receivedAt: timestamp,
                    kind: .telemetry(samples)
                )
            )
        }
        if (second + 1) % secondsPerBatch == 0 || second == seconds1 - 1 {
            let t0 = now()
            run("append") { try engine.append(batch, durable: false) }
            appendTime += now() - t0
            batch.removeAll(keepingCapacity: true)
            if let csv, csvBuffer.utf8.count > 1 << 20 {
                csv.write(Data(csvBuffer.utf8))
                csvBuffer = ""
            }
        }
    }
    if let csv {
        csv.write(Data(csvBuffer.utf8))
        try? csv.close()
    }
    let t0 = now()
    run("checkpoint") { try engine.checkpoint() }
    let checkpoint = now() - t0
    let samples = devices * keys * seconds1
    let live = filesOnDisk()
    let liveTotal = live.values.reduce(0, +)
    emit([
        "devices": devices, "keys": keys, "days": days, "jitter_ms": jitter, "series": devices * keys,
        "samples": samples,
        "append_s": seconds(appendTime), "append_samples_per_s": Double(samples) / seconds(appendTime),
        "final_checkpoint_s": seconds(checkpoint),
        "files_after_checkpoint": live, "bytes_after_checkpoint": liveTotal,
        "bytes_per_sample": Double(liveTotal) / Double(samples),
        "engine_size_on_disk": engine.sizeOnDisk(),
    ])

case "day":
    // On the directory `size` left: one series' day into 1-minute buckets (minute rollups for
    // whole minutes), the same into 90-s buckets (no rollup tier divides 90 s: raw chunks), and
    // a device's 10 keys into 1-minute buckets. First call after opening, then warm calls.
    let iterations = option("iterations", 200)
    let t0 = now()
    let engine = openEngine()
    let openTime = now() - t0
    let from = start
    let to = start + 86_400_000 - 1
    var results: [String: Any] = ["open_s": seconds(openTime), "iterations": iterations]
    for (name, keys, interval) in [
        ("day_1m_one_key", Optional(["temperature"]), Int64(60_000)),
        ("day_90s_one_key", Optional(["temperature"]), Int64(90_000)),
        ("day_1m_all_keys", nil, Int64(60_000)),
    ] as [(String, [String]?, Int64)] {
        let query = TelemetryAggregateQuery(
            deviceID: deviceName(0),
            keys: keys,
            from: from,
            to: to,
            interval: interval,
            aggregation: .avg
        )
        var buckets = 0
        let c0 = now()
        run(name) { buckets = try engine.aggregate(query).values.reduce(0) { $0 + $1.count } }
        let cold = now() - c0
        var times: [UInt64] = []
        let cpu0 = cpuNow()
        for _ in 0..<iterations {
            let q0 = now()
            run(name) { _ = try engine.aggregate(query) }
            times.append(now() - q0)
        }
        var entry = summary(times)
        entry["cpu_mean_ms"] = Double(cpuNow() - cpu0) / 1e6 / Double(max(1, iterations))
        entry["first_call_ms"] = Double(cold) / 1e6
        entry["buckets"] = buckets
        results[name] = entry
    }
    emit(results)

case "year":
    // One series: `days` of 1-minute-spaced samples appended in batches (the engine seals chunks
    // and folds them into its 1-minute and 1-hour rollups), checkpoint; then that year into daily
    // buckets, first call and warm calls.
    let days = option("days", 365)
    let iterations = option("iterations", 100)
    let count = days * 1440
    /// Fills a fresh engine and returns the time spent appending; the engine is closed on return.
    @MainActor func fillYear() -> UInt64 {
        var signal = Signal(base: 21, decimals: 2, seed: 5)
        let engine = openEngine()
        var fill: UInt64 = 0
        var position = 0
        while position < count {
            var batch: [DeviceMessage] = []
            for _ in 0..<100 where position < count {  // 100 messages of 60 samples: 100 hours
                let stop = min(position + 60, count)
                let samples = (position..<stop).map { i -> TelemetrySample in
                    let timestamp = start + Int64(i) * 60_000
                    return TelemetrySample(
                        key: "temperature",
                        timestamp: timestamp,
                        value: .number(signal.value(at: timestamp - start))
                    )
                }
                batch.append(
                    DeviceMessage(
                        tenantID: "tenant",
                        deviceID: deviceName(0),
                        receivedAt: samples[0].timestamp,
                        kind: .telemetry(samples)
                    )
                )
                position = stop
            }
            let t0 = now()
            run("append") { try engine.append(batch, durable: false) }
            fill += now() - t0
        }
        run("checkpoint") { try engine.checkpoint() }
        return fill
    }
    // Reopened: the query reads what is on disk, as after a restart.
    let fill = fillYear()
    let t0 = now()
    let reopened = openEngine()
    let openTime = now() - t0
    let dayStart = start - start % 86_400_000
    let query = TelemetryAggregateQuery(
        deviceID: deviceName(0),
        keys: ["temperature"],
        from: dayStart,
        to: dayStart + Int64(days) * 86_400_000 - 1,
        interval: 86_400_000,
        aggregation: .avg
    )
    var buckets = 0
    let c0 = now()
    run("query") { buckets = try reopened.aggregate(query)["temperature"]?.count ?? 0 }
    let cold = now() - c0
    var times: [UInt64] = []
    let cpu0 = cpuNow()
    for _ in 0..<iterations {
        let q0 = now()
        run("query") { _ = try reopened.aggregate(query) }
        times.append(now() - q0)
    }
    var entry = summary(times)
    entry["cpu_mean_ms"] = Double(cpuNow() - cpu0) / 1e6 / Double(max(1, iterations))
    entry["first_call_ms"] = Double(cold) / 1e6
    entry["buckets"] = buckets
    emit([
        "days": days, "samples": count, "fill_s": seconds(fill), "fill_samples_per_s": Double(count) / seconds(fill),
        "open_s": seconds(openTime), "year_1d": entry, "bytes_on_disk": filesOnDisk().values.reduce(0, +),
    ])

case "latest":
    // `devices` devices with `keys` keys each (a few messages each), then the latest values of
    // all of them in one call.
    let devices = option("devices", 1000)
    let keys = option("keys", 10)
    let iterations = option("iterations", 200)
    let pool = valuePool()
    @MainActor func fillLatest() {
        let engine = openEngine()
        for round in 0..<5 {
            let batch = messages(
                devices: 0..<devices,
                keys: keys,
                timestamp: start + Int64(round) * 1000,
                pool: pool,
                offset: round
            )
            run("append") { try engine.append(batch, durable: false) }
        }
        run("checkpoint") { try engine.checkpoint() }
    }
    fillLatest()
    let reopened = openEngine()
    let ids = (0..<devices).map(deviceName)
    let c0 = now()
    let found = reopened.latest(deviceIDs: ids)
    let cold = now() - c0
    var values = 0
    for (_, latest) in found { values += latest.count }
    var times: [UInt64] = []
    let cpu0 = cpuNow()
    for _ in 0..<iterations {
        let q0 = now()
        let result = reopened.latest(deviceIDs: ids)
        times.append(now() - q0)
        precondition(result.count == devices)
    }
    var entry = summary(times)
    entry["cpu_mean_ms"] = Double(cpuNow() - cpu0) / 1e6 / Double(max(1, iterations))
    entry["first_call_ms"] = Double(cold) / 1e6
    emit(["devices": devices, "keys": keys, "values": values, "latest": entry])

default:
    FileHandle.standardError.write(Data("meridian-tsbench: unknown scenario \(scenario)\n".utf8))
    exit(2)
}
