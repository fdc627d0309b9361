import Foundation

extension DeviceImport {
    /// One CSV record with the line it starts on.
    struct CSVRecord {
        var line: Int
        var fields: [String]
    }

    /// Splits RFC 4180 CSV (commas, CRLF or LF line ends, `"` quoting with `""` for a quote,
    /// quoted fields may span lines) into records. Blank lines are skipped.
    static func csvRecords(_ text: String) throws -> [CSVRecord] {
        var records: [CSVRecord] = []
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var fieldWasQuoted = false
        var line = 1
        var recordLine = 1
        var scalars = Array(text.unicodeScalars)
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
        var index = 0
        func endRecord() {
            fields.append(field)
            if !(fields.count == 1 && fields[0].isEmpty && !fieldWasQuoted) {
                records.append(CSVRecord(line: recordLine, fields: fields))
            }
            fields = []
            field = ""
            fieldWasQuoted = false
        }
        while index < scalars.count {
            let scalar = scalars[index]
            if inQuotes {
                if scalar == "\"" {
                    if index + 1 < scalars.count, scalars[index + 1] == "\"" {
                        field.unicodeScalars.append("\"")
                        index += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if scalar == "\n" { line += 1 }
                    field.unicodeScalars.append(scalar)
                }
            } else {
                switch scalar {
                case "\"":
                    guard field.isEmpty, !fieldWasQuoted else {
                        throw RegistryError(
                            .invalid, "line \(line): a quote inside an unquoted field", field: "file",
                            rowErrors: [.init(line: line, field: "row", reason: "a quote in the middle of a field (quote the whole field and double inner quotes)")]
                        )
                    }
                    inQuotes = true
                    fieldWasQuoted = true
                case ",":
                    fields.append(field)
                    field = ""
                    fieldWasQuoted = false
                case "\r":
                    if index + 1 < scalars.count, scalars[index + 1] == "\n" { index += 1 }
                    endRecord()
                    line += 1
                    recordLine = line
                case "\n":
                    endRecord()
                    line += 1
                    recordLine = line
                default:
                    guard !fieldWasQuoted else {
                        throw RegistryError(
                            .invalid, "line \(line): text after a closing quote", field: "file",
                            rowErrors: [.init(line: line, field: "row", reason: "text after a closing quote")]
                        )
                    }
                    field.unicodeScalars.append(scalar)
                }
            }
            index += 1
        }
        if inQuotes {
            throw RegistryError(
                .invalid, "line \(recordLine): a quoted field is never closed", field: "file",
                rowErrors: [.init(line: recordLine, field: "row", reason: "a quoted field is never closed")]
            )
        }
        if !field.isEmpty || !fields.isEmpty || fieldWasQuoted { endRecord() }
        return records
    }

    static func parseCSVRows(_ text: String) throws -> [Row] {
        let records = try csvRecords(text)
        guard let header = records.first else {
            throw RegistryError(.invalid, "the file is empty", field: "file")
        }
        let columns = header.fields.map { $0.trimmingCharacters(in: .whitespaces) }
        var headerErrors: [RegistryError.RowError] = []
        var seen: Set<String> = []
        for column in columns {
            if !seen.insert(column).inserted {
                headerErrors.append(.init(line: header.line, field: column, reason: "the column appears twice"))
            }
            let known = ["name", "id", "profile", "labels", "metadata"].contains(column)
            if !known && !(column.hasPrefix("label.") && column.count > 6) {
                headerErrors.append(
                    .init(line: header.line, field: column, reason: "unknown column (use name, id, profile, labels, metadata or label.<key>)")
                )
            }
        }
        if !columns.contains("name") {
            headerErrors.append(.init(line: header.line, field: "name", reason: "the header has no name column"))
        }
        guard headerErrors.isEmpty else {
            throw RegistryError(.invalid, "the header row is invalid", field: "file", rowErrors: headerErrors)
        }
        var rows: [Row] = []
        var errors: [RegistryError.RowError] = []
        for record in records.dropFirst() {
            guard record.fields.count == columns.count else {
                errors.append(
                    .init(line: record.line, field: "row", reason: "\(record.fields.count) fields where the header has \(columns.count)")
                )
                continue
            }
            var draft = DeviceDraft(name: "")
            var rowFailed = false
            for (column, value) in zip(columns, record.fields) {
                switch column {
                case "name":
                    draft.name = value
                case "id":
                    draft.id = value.isEmpty ? nil : value
                case "profile":
                    draft.profile = value.isEmpty ? nil : value
                case "labels":
                    guard !value.isEmpty else { continue }
                    for pair in value.split(separator: ";", omittingEmptySubsequences: true) {
                        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                        guard parts.count == 2 else {
                            errors.append(.init(line: record.line, field: "labels", reason: "'\(pair.prefix(40))' is not key=value"))
                            rowFailed = true
                            continue
                        }
                        let key = String(parts[0]).trimmingCharacters(in: .whitespaces)
                        if draft.labels[key] != nil {
                            errors.append(.init(line: record.line, field: "labels", reason: "label '\(key.prefix(40))' is given twice"))
                            rowFailed = true
                        }
                        draft.labels[key] = String(parts[1])
                    }
                case "metadata":
                    guard !value.isEmpty else { continue }
                    guard let metadata = try? JSONDecoder().decode(JSONValue.self, from: Data(value.utf8)) else {
                        errors.append(.init(line: record.line, field: "metadata", reason: "not valid JSON"))
                        rowFailed = true
                        continue
                    }
                    draft.metadata = metadata
                default:
                    guard !value.isEmpty else { continue }
                    let key = String(column.dropFirst(6))
                    if draft.labels[key] != nil {
                        errors.append(.init(line: record.line, field: column, reason: "label '\(key.prefix(40))' is given twice"))
                        rowFailed = true
                    }
                    draft.labels[key] = value
                }
            }
            if !rowFailed { rows.append(Row(line: record.line, draft: draft)) }
        }
        guard errors.isEmpty else {
            throw RegistryError(.invalid, "\(Set(errors.map(\.line)).count) rows cannot be read", field: "file", rowErrors: errors)
        }
        return rows
    }

    static func parseJSONRows(_ data: Data) throws -> [Row] {
        guard let elements = try? JSONDecoder().decode([JSONValue].self, from: data) else {
            throw RegistryError(.invalid, "expected a JSON array of devices", field: "file")
        }
        var rows: [Row] = []
        var errors: [RegistryError.RowError] = []
        let encoder = JSONEncoder()
        for (index, element) in elements.enumerated() {
            do {
                let draft = try JSONDecoder().decode(DeviceDraft.self, from: encoder.encode(element))
                rows.append(Row(line: index, draft: draft))
            } catch let error as DecodingError {
                errors.append(.init(line: index, field: field(of: error), reason: reason(of: error)))
            } catch {
                errors.append(.init(line: index, field: "row", reason: "not a device object"))
            }
        }
        guard errors.isEmpty else {
            throw RegistryError(.invalid, "\(errors.count) rows cannot be read", field: "file", rowErrors: errors)
        }
        return rows
    }

    private static func field(of error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            return (context.codingPath + [key]).first?.stringValue ?? "row"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return context.codingPath.first?.stringValue ?? "row"
        @unknown default:
            return "row"
        }
    }

    private static func reason(of error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "'\(key.stringValue)' is required"
        case .typeMismatch(let type, _): return "expected \(type)"
        case .valueNotFound: return "a value is missing"
        case .dataCorrupted: return "the value cannot be read"
        @unknown default: return "the value cannot be read"
        }
    }
}
