import Foundation
import MeridianCore
import Testing

@Suite("Device import parsing")
struct DeviceImportTests {
    @Test("CSV: header-driven columns, RFC 4180 quoting, line numbers counting the header")
    func csv() throws {
        let text = "id,name,labels,label.site,metadata\r\n"
            + "d1,\"Pump, north\",a=1;b=2,plant-3,\"{\"\"vin\"\":\"\"X\"\"}\"\r\n"
            + "\r\n"
            + ",\"two\nlines\",,,\n"
            + "d3,plain,,,\n"
        let rows = try DeviceImport.parseCSV(text)
        #expect(rows.map(\.line) == [2, 4, 6])
        #expect(rows[0].draft == DeviceDraft(id: "d1", name: "Pump, north", labels: ["a": "1", "b": "2", "site": "plant-3"], metadata: .object(["vin": .string("X")])))
        #expect(rows[1].draft.name == "two\nlines")
        #expect(rows[1].draft.id == nil)
        #expect(rows[2].draft.name == "plain")
    }

    @Test("CSV: bad rows and headers are reported with line and field")
    func csvErrors() {
        #expect { try DeviceImport.parseCSV("name,colour\nx,red\n") } throws: { error in
            (error as? RegistryError)?.rowErrors == [.init(line: 1, field: "colour", reason: "unknown column (use name, id, profile, labels, metadata or label.<key>)")]
        }
        #expect { try DeviceImport.parseCSV("id\nx\n") } throws: { error in
            (error as? RegistryError)?.rowErrors.map(\.field) == ["name"]
        }
        #expect { try DeviceImport.parseCSV("name,labels,metadata\nok,,\nbad,a,\nworse,,{nope\nshort\n") } throws: { error in
            (error as? RegistryError)?.rowErrors.map { "\($0.line):\($0.field)" } == ["3:labels", "4:metadata", "5:row"]
        }
        #expect { try DeviceImport.parseCSV("name\n\"never closed\n") } throws: { error in
            (error as? RegistryError)?.rowErrors.map(\.line) == [2]
        }
        #expect { try DeviceImport.parseCSV("") } throws: { error in (error as? RegistryError)?.code == .invalid }
    }

    @Test("JSON: an array of drafts; a bad element is reported by index and field")
    func json() throws {
        let rows = try DeviceImport.parseJSON(Data(#"[{"name":"a","labels":{"k":"v"}},{"name":"b","id":"b-1","profile":"p"}]"#.utf8))
        #expect(rows.map(\.line) == [0, 1])
        #expect(rows[1].draft == DeviceDraft(id: "b-1", name: "b", profile: "p"))
        #expect { try DeviceImport.parseJSON(Data(#"[{"name":"a"},{"labels":{}},{"name":5}]"#.utf8)) } throws: { error in
            (error as? RegistryError)?.rowErrors.map { "\($0.line):\($0.field)" } == ["1:name", "2:name"]
        }
        #expect { try DeviceImport.parseJSON(Data(#"{"name":"a"}"#.utf8)) } throws: { error in (error as? RegistryError)?.code == .invalid }
    }
}
