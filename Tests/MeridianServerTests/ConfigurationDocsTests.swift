import Foundation
import MeridianServer
import Testing

/// The repository's root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // MeridianServerTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

func repositoryFile(_ path: String) throws -> String {
    try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)
}

@Suite("Configuration docs and example file")
struct ConfigurationDocsTests {
    /// Every key has a row in docs/configuration.md equal to the registry's (name, type, default,
    /// environment variable, flag, meaning). Regenerate with `meridian config keys --markdown`.
    @Test(arguments: MeridianConfiguration.keys)
    func everyKeyIsDocumented(_ key: ConfigurationKey) throws {
        let lines = try repositoryFile("docs/configuration.md").split(separator: "\n").map(String.init)
        #expect(
            lines.contains(key.markdownRow),
            "docs/configuration.md lacks (or has an outdated) row for \(key.name); expected:\n\(key.markdownRow)"
        )
    }

    @Test func docsListNoKeyThatDoesNotExist() throws {
        let rows = try repositoryFile("docs/configuration.md").split(separator: "\n")
            .filter { $0.hasPrefix("| `") }
        let names = rows.compactMap { row -> String? in
            let cells = row.split(separator: "`")
            return cells.count > 1 ? String(cells[1]) : nil
        }
        #expect(names.sorted() == MeridianConfiguration.keys.map(\.name).sorted())
    }

    @Test func exampleFileParsesAsItIs() throws {
        let resolved = try MeridianConfiguration.load(toml: try repositoryFile("meridian.example.toml"))
        #expect(resolved.sources.isEmpty)
    }

    /// Uncommenting every `# key = value` line of meridian.example.toml sets every key to its default.
    @Test func exampleFileShowsEveryKeyAtItsDefault() throws {
        let uncommented = try repositoryFile("meridian.example.toml")
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { line -> Substring in
                let isAssignment =
                    line.hasPrefix("# ") && line.dropFirst(2).split(separator: " ").dropFirst().first == "="
                return isAssignment ? line.dropFirst(2) : line
            }
            .joined(separator: "\n")
        let resolved = try MeridianConfiguration.load(toml: uncommented, path: "meridian.example.toml")
        for key in MeridianConfiguration.keys {
            #expect(resolved.sources[key.name] != nil, "meridian.example.toml lacks \(key.name)")
            #expect(key.value(in: resolved.configuration) == key.defaultValue, "\(key.name)")
        }
    }

    @Test func exampleFileIsTheGeneratedOne() throws {
        #expect(
            try repositoryFile("meridian.example.toml") == MeridianConfiguration.exampleTOML(),
            "regenerate with: meridian config example > meridian.example.toml"
        )
    }

    @Test func keysReferenceListsEveryKey() {
        let reference = MeridianConfiguration.keysReference()
        for key in MeridianConfiguration.keys {
            #expect(reference.contains("  \(key.name) = \(key.defaultValue.tomlText)\n"))
            #expect(reference.contains("; env \(key.environmentVariable)\n"))
            #expect(reference.contains(key.help))
        }
    }
}
