import MeridianSimulator
import Testing

@Suite("SimulationRandom")
struct SimulationRandomTests {
    @Test("the same seed and device give the same numbers; other devices and streams other numbers")
    func reproducible() {
        var first = SimulationRandom(seed: 42, deviceIndex: 3)
        var second = SimulationRandom(seed: 42, deviceIndex: 3)
        var otherDevice = SimulationRandom(seed: 42, deviceIndex: 4)
        var otherSeed = SimulationRandom(seed: 43, deviceIndex: 3)
        var otherStream = SimulationRandom(seed: 42, deviceIndex: 3, stream: 1)
        let a = (0..<100).map { _ in first.next() }
        #expect(a == (0..<100).map { _ in second.next() })
        #expect(a != (0..<100).map { _ in otherDevice.next() })
        #expect(a != (0..<100).map { _ in otherSeed.next() })
        #expect(a != (0..<100).map { _ in otherStream.next() })
    }

    @Test("uniform, normal and Bernoulli draws have the intended distributions")
    func distributions() {
        var random = SimulationRandom(seed: 7, deviceIndex: 0)
        let count = 20_000
        let uniforms = (0..<count).map { _ in random.uniform() }
        #expect(uniforms.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(abs(uniforms.reduce(0, +) / Double(count) - 0.5) < 0.02)

        let normals = (0..<count).map { _ in random.normal(mean: 10, standardDeviation: 2) }
        #expect(normals.allSatisfy { $0.isFinite })
        let mean = normals.reduce(0, +) / Double(count)
        let variance = normals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(count)
        #expect(abs(mean - 10) < 0.1)
        #expect(abs(variance.squareRoot() - 2) < 0.1)

        let hits = (0..<count).filter { _ in random.bernoulli(0.3) }.count
        #expect(abs(Double(hits) / Double(count) - 0.3) < 0.02)
        let never = random.bernoulli(0)
        let always = random.bernoulli(1)
        #expect(!never)
        #expect(always)
    }
}
