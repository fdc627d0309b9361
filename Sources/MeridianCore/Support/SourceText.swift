/// What the small languages (fleet queries, rule expressions, condition specs) share about
/// their text: where an offset is, and the duration units.
enum SourceText {
    /// The 1-based line and column of the Unicode scalar at `offset` (0-based) in `source`.
    static func lineAndColumn(of offset: Int, in source: String) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        var seen = 0
        for scalar in source.unicodeScalars {
            if seen == offset { break }
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
            seen += 1
        }
        return (line, column)
    }

    /// Duration units, smallest first: `500ms`, `30s`, `5m`, `1h`, `2d`. (Fleet queries also
    /// accept `w`.)
    static let durationUnits: [(suffix: String, milliseconds: Int64)] = [
        ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]

    /// Milliseconds per `suffix`, one of ``durationUnits``; nil for anything else.
    static func milliseconds(perDurationUnit suffix: String) -> Int64? {
        durationUnits.first { $0.suffix == suffix }?.milliseconds
    }
}
