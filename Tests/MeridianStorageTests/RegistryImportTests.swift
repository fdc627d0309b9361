import Foundation
import MeridianCore
import MeridianStorage
import Testing

@Suite("Registry: bulk import")
struct RegistryImportTests {
    @Test("an import with bad rows creates nothing and names every bad row's line and field")
    func allOrNothing() async throws {
        let fixture = try await RegistryFixture()
        let registry = fixture.registry
        _ = try await registry.createDevice(DeviceDraft(id: "taken-id", name: "existing"), by: fixture.ownerA)
        _ = try await registry.createProfile(ProfileDraft(name: "meter"), by: fixture.ownerA)
        let csv = """
            name,id,profile,label.site
            ok-1,,meter,north
            existing,,,
            ok-2,taken-id,,
            ok-1,,,
            ok-3,,nope,
            ok-4,bad/id,,
            ok-5,,,"bad value\u{7}"
            """
        let rows = try DeviceImport.parseCSV(csv)
        #expect(rows.count == 7)
        do {
            _ = try await registry.importDevices(rows, by: fixture.ownerA)
            Issue.record("an import with bad rows succeeded")
        } catch let error as RegistryError {
            #expect(error.code == .invalid)
            let found = Set(error.rowErrors.map { "\($0.line):\($0.field)" })
            #expect(found == ["3:name", "4:id", "5:name", "6:profile", "7:id", "8:labels"])
        }
        let page = try await registry.devices(DeviceQuery(tenantID: "", limit: 100), by: fixture.ownerA)
        #expect(page.items.map(\.name) == ["existing"])

        let good = try DeviceImport.parseCSV("name,profile,labels\nok-1,meter,site=north;floor=2\nok-2,,\n")
        let created = try await registry.importDevices(good, by: fixture.ownerA)
        #expect(created.map(\.name) == ["ok-1", "ok-2"])
        #expect(created[0].labels == ["site": "north", "floor": "2"])
        #expect(created[0].profileID != nil)
    }

    @Test("10,000 devices import in one transaction")
    func tenThousand() async throws {
        let fixture = try await RegistryFixture()
        var json = "["
        for index in 0..<10_000 {
            if index > 0 { json += "," }
            json += #"{"name":"sensor-\#(index)","labels":{"batch":"b\#(index % 10)","site":"plant-\#(index % 3)"}}"#
        }
        json += "]"
        let rows = try DeviceImport.parseJSON(Data(json.utf8))
        let clock = ContinuousClock()
        let start = clock.now
        let created = try await fixture.registry.importDevices(rows, by: fixture.ownerA)
        let elapsed = clock.now - start
        print("imported \(created.count) devices in \(elapsed)")
        #expect(created.count == 10_000)
        let listStart = clock.now
        let filtered = try await fixture.registry.devices(DeviceQuery(tenantID: "", labels: ["batch": "b7", "site": "plant-1"], limit: 1000), by: fixture.ownerA)
        print("label-filtered list of \(filtered.items.count) devices in \(clock.now - listStart)")
        // index % 10 == 7 and index % 3 == 1: index = 7 + 30k, k = 0...333.
        #expect(filtered.items.count == 334)
        #expect(filtered.items.allSatisfy { $0.labels["batch"] == "b7" && $0.labels["site"] == "plant-1" })
        #expect(try await fixture.registry.verifyAudit().isIntact)
    }
}
