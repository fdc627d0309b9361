/// The twins as fleet queries read them (`reported.*`, `desired.*`): each device's default
/// twin.
public struct TwinFleetSource: FleetTwinSource {
    public let twins: TwinService

    public init(twins: TwinService) {
        self.twins = twins
    }

    public func twins(tenantID: String, deviceIDs: [String]) async throws -> [String: FleetTwinDocuments] {
        let documents = try await twins.twins(tenantID: tenantID, deviceIDs: deviceIDs)
        var result: [String: FleetTwinDocuments] = [:]
        result.reserveCapacity(documents.count)
        for (deviceID, document) in documents where document.exists {
            result[deviceID] = FleetTwinDocuments(reported: .object(document.reported), desired: .object(document.desired))
        }
        return result
    }
}
