package bow.bowlog;

/**
 * One backup record: the old data of [source, source + size) now sits at dest.
 * Sectors are 512 bytes; size is in bytes; checksum 0 means "not checked".
 */
public record LogEntry(long sourceSector, long destSector, int size, int checksum) {
    public long sourceByte() { return sourceSector * 512; }

    public long destByte() { return destSector * 512; }

    public long sizeBytes() { return Integer.toUnsignedLong(size); }
}
