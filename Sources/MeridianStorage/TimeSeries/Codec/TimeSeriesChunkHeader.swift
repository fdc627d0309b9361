import MeridianCore

/// What a chunk's header says about it, read by ``TimeSeriesChunkCodec/header(_:)`` without decoding the body.
public struct TimeSeriesChunkHeader: Sendable, Hashable {
    /// The chunk format version (``TimeSeriesChunkCodec/formatVersion``).
    public var formatVersion: UInt8
    /// The type of the chunk's values.
    public var valueType: TelemetryValueType
    /// How the values are encoded.
    public var valueEncoding: TimeSeriesValueEncoding
    /// Samples in the chunk (1...``TimeSeriesChunkCodec/maximumCount``).
    public var count: Int
    /// The first sample's timestamp (milliseconds since 1970).
    public var firstTimestamp: Int64
    /// The last sample's timestamp (milliseconds since 1970).
    public var lastTimestamp: Int64
    /// The size of the whole chunk in bytes.
    public var byteCount: Int

    /// A header with the given fields.
    public init(
        formatVersion: UInt8,
        valueType: TelemetryValueType,
        valueEncoding: TimeSeriesValueEncoding,
        count: Int,
        firstTimestamp: Int64,
        lastTimestamp: Int64,
        byteCount: Int
    ) {
        self.formatVersion = formatVersion
        self.valueType = valueType
        self.valueEncoding = valueEncoding
        self.count = count
        self.firstTimestamp = firstTimestamp
        self.lastTimestamp = lastTimestamp
        self.byteCount = byteCount
    }
}
