import Foundation
import MeridianCore
import Synchronization
import Testing

@testable import MeridianStorage

@Suite("Time-series engine")
struct TimeSeriesEngineTests {
    static let base: Int64 = 1_700_000_000_000

    @Test("every appended value reads back bit-identical, across sealed chunks and the head")
    func roundTrip() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 16)
        let engine = try fixture.open()
        let specials: [Double] = [.nan, -.nan, .infinity, -.infinity, -0.0, 0.0, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 21.53]
        var expected: [TelemetryPoint] = []
        for i in 0..<100 {
            let value = i < specials.count ? specials[i] : Double(i) * 0.01
            let point = TelemetryPoint(timestamp: Self.base + Int64(i) * 1000, value: .number(value))
            expected.append(point)
            try engine.append([TimeSeriesFixture.message("d1", [TelemetrySample(key: "temp", timestamp: point.timestamp, value: point.value)])])
        }
        try engine.append([
            TimeSeriesFixture.message("d1", [
                TelemetrySample(key: "on", timestamp: Self.base, value: .bool(true)),
                TelemetrySample(key: "mode", timestamp: Self.base, value: .string("eco ✓")),
            ])
        ])
        let result = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: nil, from: Self.base, to: Self.base + 1_000_000, limit: 1000))
        let temps = try #require(result.points["temp"])
        #expect(temps.count == expected.count)
        #expect(zip(temps, expected).allSatisfy { $0.timestamp == $1.timestamp && $0.value.isIdentical(to: $1.value) })
        #expect(result.points["on"] == [TelemetryPoint(timestamp: Self.base, value: .bool(true))])
        #expect(result.points["mode"] == [TelemetryPoint(timestamp: Self.base, value: .string("eco ✓"))])
        #expect(result.next.isEmpty)
        let latest = engine.latest(deviceIDs: ["d1", "nobody"])
        #expect(latest["d1"]?["temp"]?.timestamp == Self.base + 99_000)
        #expect(latest["nobody"] == nil)
    }

    @Test("everything appended survives a restart: sealed chunks, the WAL, head snapshots and latest values")
    func restart() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 16)
        do {
            let engine = try fixture.open()
            for i in 0..<40 {
                try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("temp", [(Self.base + Int64(i) * 1000, Double(i))]))])
            }
            try engine.checkpoint()
            // After the checkpoint: only in the WAL.
            for i in 40..<45 {
                try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("temp", [(Self.base + Int64(i) * 1000, Double(i))]))])
            }
        }
        let engine = try fixture.open()
        let result = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["temp"], from: .min, to: .max, limit: 1000))
        #expect(result.points["temp"]?.map(\.timestamp) == (0..<45).map { Self.base + Int64($0) * 1000 })
        #expect(engine.latest(deviceIDs: ["d1"])["d1"]?["temp"] == TelemetryPoint(timestamp: Self.base + 44_000, value: .number(44)))
    }

    @Test("out-of-order and repeated timestamps: last write wins, in the head and in sealed chunks")
    func lastWriteWins() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 8)
        let engine = try fixture.open()
        // 0, 2, 4, ... 38 in order: several chunks sealed.
        for i in stride(from: 0, to: 40, by: 2) {
            try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("v", [(Self.base + Int64(i), Double(i))]))])
        }
        // Late: odd timestamps into sealed chunks, a rewrite of a sealed one, and of a head one.
        try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("v", [(Self.base + 3, 3), (Self.base + 4, 400), (Self.base + 38, 3800), (Self.base + 37, 37)]))])
        try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("v", [(Self.base + 4, 4000)]))])
        var expected: [Int64: Double] = [:]
        for i in stride(from: 0, to: 40, by: 2) { expected[Self.base + Int64(i)] = Double(i) }
        expected[Self.base + 3] = 3
        expected[Self.base + 4] = 4000
        expected[Self.base + 38] = 3800
        expected[Self.base + 37] = 37
        let check = { (engine: TimeSeriesEngine) throws in
            let points = try #require(try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["v"], from: .min, to: .max, limit: 1000)).points["v"])
            #expect(points.map(\.timestamp) == expected.keys.sorted())
            #expect(points.map(\.value) == expected.keys.sorted().map { .number(expected[$0]!) })
            // The rollups agree with the raw data.
            let sum = try engine.aggregate(TelemetryAggregateQuery(deviceID: "d1", keys: ["v"], from: Self.base - 60_000, to: Self.base + 120_000, interval: 3_600_000, aggregation: .sum))
            #expect(sum["v"]?.first?.value == .number(expected.values.reduce(0, +)))
        }
        try check(engine)
        try check(try fixture.open())
    }

    @Test("aggregates over every bucket size equal a brute-force computation over the raw data", arguments: [30_000, 60_000, 900_000, 3_600_000, 86_400_000] as [Int64])
    func aggregatesMatchBruteForce(interval: Int64) throws {
        let fixture = TimeSeriesFixture(chunkSamples: 100)
        let engine = try fixture.open()
        var random = SeededRandom(seed: 42)
        var raw: [(Int64, Double)] = []
        var timestamp = Self.base - Self.base % 86_400_000 - 7_300_000
        for _ in 0..<6000 {
            timestamp += Int64.random(in: 500...90_000, using: &random)
            raw.append((timestamp, (Double(Int.random(in: -5000...5000, using: &random)) / 100)))
        }
        for batch in stride(from: 0, to: raw.count, by: 37) {
            try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("t", Array(raw[batch..<min(batch + 37, raw.count)])))])
        }
        for (from, to) in [(raw[0].0, raw.last!.0), (raw[10].0 + 1234, raw[5000].0 - 777), (raw[100].0, raw[100].0)] {
            for aggregation in TelemetryAggregation.allCases {
                let result = try engine.aggregate(TelemetryAggregateQuery(deviceID: "d1", keys: ["t"], from: from, to: to, interval: interval, aggregation: aggregation))
                var buckets: [(Int64, [Double])] = []
                for (ts, value) in raw where ts >= from && ts <= to {
                    let start = bucketStart(ts, interval)
                    if buckets.last?.0 == start { buckets[buckets.count - 1].1.append(value) } else { buckets.append((start, [value])) }
                }
                let got = result["t"] ?? []
                #expect(got.map(\.timestamp) == buckets.map(\.0), "\(aggregation) \(interval)")
                for (point, bucket) in zip(got, buckets) {
                    guard case .number(let value) = point.value else { Issue.record("not a number"); continue }
                    let values = bucket.1
                    let want: Double
                    switch aggregation {
                    case .avg: want = values.reduce(0, +) / Double(values.count)
                    case .sum: want = values.reduce(0, +)
                    case .min: want = values.min()!
                    case .max: want = values.max()!
                    case .count: want = Double(values.count)
                    case .first: want = values.first!
                    case .last: want = values.last!
                    }
                    #expect(abs(value - want) <= 1e-9 * max(1, abs(want)), "\(aggregation) \(interval) at \(point.timestamp)")
                }
            }
        }
    }

    @Test("paging: the cursor walks a range without gaps or repeats")
    func paging() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 10)
        let engine = try fixture.open()
        let all = (0..<95).map { (Self.base + Int64($0) * 10, Double($0)) }
        try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("a", all))])
        var seen: [Int64] = []
        var after: [String: Int64] = [:]
        var pages = 0
        repeat {
            let page = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["a"], from: .min, to: .max, limit: 20, after: after))
            seen += page.points["a"]?.map(\.timestamp) ?? []
            after = page.next
            pages += 1
        } while !after.isEmpty && pages < 100
        #expect(pages == 5)
        #expect(seen == all.map(\.0))
    }

    @Test("retention removes exactly the samples and buckets older than the cut")
    func retention() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 50)
        let engine = try fixture.open()
        let day: Int64 = 86_400_000
        let points = (0..<1000).map { (Self.base + Int64($0) * 600_000, Double($0)) }  // every 10 min, ~7 days
        try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("a", points))])
        let now = points.last!.0
        let cut = now - 3 * day + 123
        let outcome = try engine.applyRetention(deviceID: "d1", retention: TelemetryRetention(raw: 3 * day - 123, minute: 3 * day - 123, hour: nil), now: now)
        let kept = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["a"], from: .min, to: .max, limit: 10_000)).points["a"] ?? []
        #expect(kept.map(\.timestamp) == points.filter { $0.0 >= cut }.map(\.0))
        #expect(outcome.samples == points.filter { $0.0 < cut }.count)
        // Minute buckets before the cut are gone; hour buckets (kept forever) are all there.
        let minutes = try engine.aggregate(TelemetryAggregateQuery(deviceID: "d1", keys: ["a"], from: .min / 2, to: now, interval: 60_000, aggregation: .count))
        #expect(minutes["a"]?.first.map { $0.timestamp >= cut - 60_000 } == true)
        let hours = try engine.aggregate(TelemetryAggregateQuery(deviceID: "d1", keys: ["a"], from: points[0].0 - points[0].0 % 3_600_000, to: now, interval: 3_600_000, aggregation: .count))
        let total = hours["a"]?.reduce(0.0) { sum, point in if case .number(let v) = point.value { sum + v } else { sum } }
        #expect(total == 1000)
    }

    @Test("a torn WAL tail is cut off at start-up; every complete record before it is kept")
    func tornTail() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 1000)
        do {
            let engine = try fixture.open()
            for i in 0..<10 {
                try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("a", [(Self.base + Int64(i), Double(i))]))])
            }
        }
        let walDirectory = fixture.directory + "/telemetry-wal"
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: walDirectory).filter { $0.hasSuffix(".wal") }.sorted().last)
        let handle = try #require(FileHandle(forWritingAtPath: walDirectory + "/" + segment))
        handle.seekToEndOfFile()
        handle.write(Data([40, 0, 0, 0, 1, 2, 3, 4, 2, 9]))  // a record header promising 40 bytes, cut short
        try handle.close()
        let engine = try fixture.open()
        let points = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["a"], from: .min, to: .max, limit: 100)).points["a"]
        #expect(points?.count == 10)
        // And it keeps working.
        try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("a", [(Self.base + 100, 100)]))])
        #expect(try fixture.open().range(TelemetryRangeQuery(deviceID: "d1", keys: ["a"], from: .min, to: .max, limit: 100)).points["a"]?.count == 11)
    }

    @Test("a deleted device's telemetry is gone, also after a restart")
    func deleteDevice() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 4)
        let engine = try fixture.open()
        try engine.append([
            TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("a", (0..<10).map { (Self.base + Int64($0), 1) })),
            TimeSeriesFixture.message("d2", TimeSeriesFixture.numbers("a", [(Self.base, 2)])),
        ])
        try engine.deleteDevice("d1")
        #expect(engine.latest(deviceIDs: ["d1"]).isEmpty)
        #expect(try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: nil, from: .min, to: .max, limit: 10)).points.isEmpty)
        let reopened = try fixture.open()
        #expect(reopened.latest(deviceIDs: ["d1", "d2"]).keys.sorted() == ["d2"])
        #expect(try reopened.range(TelemetryRangeQuery(deviceID: "d1", keys: nil, from: .min, to: .max, limit: 10)).points.isEmpty)
    }

    @Test("out of order and repeated timestamps in the head keep booleans and strings with their timestamps")
    func headOutOfOrderOtherTypes() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 1000)
        let engine = try fixture.open()
        let order: [Int64] = [5, 1, 9, 3, 7, 3, 0, 9, 2]
        var expectedBools: [Int64: Bool] = [:]
        var expectedStrings: [Int64: String] = [:]
        for (n, offset) in order.enumerated() {
            let timestamp = Self.base + offset
            expectedBools[timestamp] = n % 2 == 0
            expectedStrings[timestamp] = "s\(n)"
            try engine.append([
                TimeSeriesFixture.message("d1", [
                    TelemetrySample(key: "on", timestamp: timestamp, value: .bool(n % 2 == 0)),
                    TelemetrySample(key: "mode", timestamp: timestamp, value: .string("s\(n)")),
                ])
            ])
        }
        for engine in [engine, try fixture.open()] {
            let points = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: nil, from: .min, to: .max, limit: 100)).points
            #expect(points["on"] == expectedBools.keys.sorted().map { TelemetryPoint(timestamp: $0, value: .bool(expectedBools[$0]!)) })
            #expect(points["mode"] == expectedStrings.keys.sorted().map { TelemetryPoint(timestamp: $0, value: .string(expectedStrings[$0]!)) })
        }
    }

    @Test("messages that repeat, reorder, drop or add keys each put every sample in its own key's series, and latest values follow, also after a restart")
    func changingKeySets() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 8)
        var generator = SeededRandom(seed: 7)
        let names = ["temp", "hum", "door", "rpm", "a.b"]
        var expected: [String: [String: [Int64: Double]]] = [:]  // device → key → timestamp → value
        do {
            let engine = try fixture.open()
            for round in 0..<300 {
                var batch: [DeviceMessage] = []
                for device in ["d1", "d2", "d3"] {
                    // Mostly the same keys in the same order, sometimes another set or order.
                    var keys = names.prefix(3).map { $0 }
                    if Int.random(in: 0..<4, using: &generator) == 0 {
                        keys = names.shuffled(using: &generator).prefix(Int.random(in: 1...names.count, using: &generator)).map { $0 }
                    }
                    let timestamp = Self.base + Int64(round) * 1000
                    var samples: [TelemetrySample] = []
                    for key in keys {
                        let value = Double(Int.random(in: 0..<10_000, using: &generator)) / 100
                        samples.append(TelemetrySample(key: key, timestamp: timestamp, value: .number(value)))
                        expected[device, default: [:]][key, default: [:]][timestamp] = value
                    }
                    batch.append(TimeSeriesFixture.message(device, samples))
                }
                try engine.append(batch)
                if round == 150 { try engine.checkpoint() }
            }
            try check(engine, expected)
        }
        try check(try fixture.open(), expected)
    }

    private func check(_ engine: TimeSeriesEngine, _ expected: [String: [String: [Int64: Double]]]) throws {
        for (device, keys) in expected {
            let result = try engine.range(TelemetryRangeQuery(deviceID: device, keys: nil, from: .min, to: .max, limit: 10_000))
            #expect(Set(result.points.keys) == Set(keys.keys))
            let latest = engine.latest(deviceIDs: [device])[device] ?? [:]
            for (key, values) in keys {
                let wanted = values.sorted { $0.key < $1.key }.map { TelemetryPoint(timestamp: $0.key, value: .number($0.value)) }
                #expect(result.points[key] == wanted, "\(device) \(key)")
                #expect(latest[key] == wanted.last, "latest \(device) \(key)")
            }
        }
    }

    @Test("idle heads are sealed at a checkpoint; samples of a key with a new type become their own series")
    func idleSealAndTypes() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 1000)
        let engine = try fixture.open()
        try engine.append([TimeSeriesFixture.message("d1", [
            TelemetrySample(key: "x", timestamp: Self.base, value: .number(1)),
            TelemetrySample(key: "x", timestamp: Self.base + 1, value: .string("one")),
        ])])
        fixture.now.withLock { $0 += 2 * 3_600_000 }
        try engine.checkpoint()
        let stored = try engine.store.chunks(series: 1, from: .min, to: .max)
        #expect(stored.count == 1)
        let points = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["x"], from: .min, to: .max, limit: 10)).points["x"]
        #expect(points == [TelemetryPoint(timestamp: Self.base, value: .number(1)), TelemetryPoint(timestamp: Self.base + 1, value: .string("one"))])
        #expect(engine.latest(deviceIDs: ["d1"])["d1"]?["x"]?.value == .string("one"))
    }
}

@Suite("Time-series engine: compaction")
struct TimeSeriesCompactionTests {
    @Test("small chunks left by idle sealing are merged; every sample and aggregate stays the same")
    func compaction() throws {
        let fixture = TimeSeriesFixture(chunkSamples: 100)
        let engine = try fixture.open()
        let base = TimeSeriesEngineTests.base
        var all: [(Int64, Double)] = []
        for round in 0..<6 {
            let points = (0..<7).map { (base + Int64(round * 100 + $0) * 1000, Double(round * 10 + $0)) }
            all += points
            try engine.append([TimeSeriesFixture.message("d1", TimeSeriesFixture.numbers("t", points))])
            fixture.now.withLock { $0 += 2 * 3_600_000 }
            try engine.checkpoint()  // idle: sealed as a chunk of 7
        }
        let series = try #require(engine.writer.withLock { state in state.headsByID.keys.first })
        #expect(try engine.store.chunks(series: series, from: .min, to: .max).count == 6)
        let sum = { try engine.aggregate(TelemetryAggregateQuery(deviceID: "d1", keys: ["t"], from: .min / 2, to: .max / 2, interval: 86_400_000, aggregation: .sum)) }
        let before = try sum()
        #expect(try engine.compact(deviceID: "d1") == 5)
        #expect(try engine.store.chunks(series: series, from: .min, to: .max).count == 1)
        let points = try engine.range(TelemetryRangeQuery(deviceID: "d1", keys: ["t"], from: .min, to: .max, limit: 1000)).points["t"]
        #expect(points?.map(\.timestamp) == all.map(\.0))
        #expect(points?.map(\.value) == all.map { .number($0.1) })
        #expect(try sum() == before)
        #expect(try fixture.open().range(TelemetryRangeQuery(deviceID: "d1", keys: ["t"], from: .min, to: .max, limit: 1000)).points["t"]?.count == all.count)
    }
}
