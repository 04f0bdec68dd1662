package bow.restore;

import bow.blockdev.BlockDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import bow.bowlog.LogEntry;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** What {@code bowctl log verify} and {@code bowctl log dump} show: the rollback's dry run, read-only. */
public final class LogInspector {
    private LogInspector() {}

    /** One entry as the dry run saw it. verdict: "ok", "mismatch" or "unchecked" (checksum 0). */
    public record EntryInfo(int index, LogEntry entry, long dataBlock, int actualChecksum, String verdict) {}

    /**
     * One log block of the chain. {@code validated} is false for a block whose header
     * failed validation (then it has no entries listed).
     */
    public record SequenceInfo(int magic, int headerVersion, int headerSize, long blockSize, long count,
                               long sequence, long sector0, long physicalBlock, boolean validated,
                               List<EntryInfo> entries) {}

    /** The whole chain as far as it could be read; {@code error} is null when it is valid. */
    public record Dump(String device, long deviceBytes, List<SequenceInfo> sequences,
                       LogChain.Summary summary, String error) {
        public boolean valid() { return error == null; }
    }

    /** The rollback's validation alone. */
    public static LogChain.Summary verify(BlockDevice dev, String name, ProgressListener progress) throws IOException {
        return LogChain.verify(dev, name, LogChain.Visitor.NONE, progress);
    }

    /**
     * Every sequence's header and entries. A chain that fails validation is listed up
     * to the failure and the error is recorded, not thrown.
     *
     * @throws NoCheckpointException block 0 holds no log at all
     */
    public static Dump dump(BlockDevice dev, String name) throws IOException {
        List<SequenceInfo> seqs = new ArrayList<>();
        LogChain.Visitor v = new LogChain.Visitor() {
            private List<EntryInfo> current;

            @Override public void sequence(LogBlock log, long physicalBlock) {
                current = new ArrayList<>();
                seqs.add(info(log, physicalBlock, true, current));
            }

            @Override public void entry(LogBlock log, int index, LogEntry e, long dataBlock, int actual) {
                String verdict = e.checksum() == 0 ? "unchecked" : actual == e.checksum() ? "ok" : "mismatch";
                current.add(new EntryInfo(index, e, dataBlock, actual, verdict));
            }

            @Override public void rejected(LogBlock log, long physicalBlock) {
                seqs.add(info(log, physicalBlock, false, List.of()));
            }
        };
        LogChain.Summary summary = null;
        String error = null;
        try {
            summary = LogChain.verify(dev, name, v, ProgressListener.NONE);
        } catch (LogCorruptException e) {
            error = e.getMessage();
            if (seqs.isEmpty() && dev.size() >= 512) {
                // The newest block itself is bad: show its raw header.
                seqs.add(info(new LogBlock(LogChain.read(dev, 0, 512)), 0, false, List.of()));
            }
        }
        for (SequenceInfo s : seqs) {
            if (s.entries() instanceof ArrayList<EntryInfo> l) l.sort(Comparator.comparingInt(EntryInfo::index));
        }
        return new Dump(name, dev.size(), seqs, summary, error);
    }

    private static SequenceInfo info(LogBlock log, long physical, boolean validated, List<EntryInfo> entries) {
        return new SequenceInfo(log.magic(), log.headerVersion(), log.headerSize(), log.blockSize(), log.count(),
                log.sequence(), log.sector0(), physical, validated, entries);
    }

    /**
     * The one-line summary bowctl prints. A StringBuilder, not "+": the method-handle classes an
     * indy concatenation spins at its first use are not kept by bowctl's class-data archive, and
     * this one's cost a log verify about 20 ms.
     */
    public static String totals(LogChain.Summary s) {
        return new StringBuilder().append(s.sequences()).append(" sequence").append(s.sequences() == 1 ? "" : "s")
                .append(", ").append(s.entries()).append(" entries, ").append(s.bytes())
                .append(" bytes to restore (block_size ").append(s.blockSize()).append(", newest sequence ")
                .append(s.newestSequence()).append(s.restoring() ? ", restore in progress" : "").append(')').toString();
    }

    public static String toText(Dump d) {
        StringBuilder b = new StringBuilder();
        b.append("device ").append(d.device()).append(": ").append(d.deviceBytes()).append(" bytes\n");
        for (SequenceInfo s : d.sequences()) {
            b.append(String.format("sequence %d (read from block %d%s): magic %s, header_version 0x%04x, header_size %d, "
                            + "block_size %d, count %d, sector0 %d%n",
                    s.sequence(), s.physicalBlock(), s.validated() ? "" : ", INVALID", LogBlock.magicName(s.magic()),
                    s.headerVersion(), s.headerSize(), s.blockSize(), s.count(), s.sector0()));
            for (EntryInfo e : s.entries()) {
                LogEntry le = e.entry();
                b.append(String.format("  entry %4d: source %d, dest %d, size %d, checksum 0x%08x %s%n",
                        e.index(), le.sourceSector(), le.destSector(), le.sizeBytes(), le.checksum(),
                        e.verdict().equals("mismatch") ? String.format("MISMATCH (actual 0x%08x, data at block %d)",
                                e.actualChecksum(), e.dataBlock()) : e.verdict()));
            }
        }
        if (d.valid()) b.append("OK: ").append(totals(d.summary())).append('\n');
        else b.append("INVALID: ").append(d.error()).append('\n');
        return b.toString();
    }

    public static String toJson(Dump d) {
        StringBuilder b = new StringBuilder();
        b.append("{\"device\":").append(str(d.device()))
                .append(",\"deviceBytes\":").append(d.deviceBytes())
                .append(",\"valid\":").append(d.valid())
                .append(",\"error\":").append(d.error() == null ? "null" : str(d.error()));
        if (d.summary() != null) {
            LogChain.Summary s = d.summary();
            b.append(",\"blockSize\":").append(s.blockSize())
                    .append(",\"newestSequence\":").append(s.newestSequence())
                    .append(",\"restoring\":").append(s.restoring())
                    .append(",\"totals\":{\"sequences\":").append(s.sequences())
                    .append(",\"entries\":").append(s.entries())
                    .append(",\"bytes\":").append(s.bytes()).append('}');
        }
        b.append(",\"sequences\":[");
        for (int i = 0; i < d.sequences().size(); i++) {
            SequenceInfo s = d.sequences().get(i);
            if (i > 0) b.append(',');
            b.append("{\"sequence\":").append(s.sequence())
                    .append(",\"magic\":").append(str(LogBlock.magicName(s.magic())))
                    .append(",\"headerVersion\":").append(s.headerVersion())
                    .append(",\"headerSize\":").append(s.headerSize())
                    .append(",\"blockSize\":").append(s.blockSize())
                    .append(",\"count\":").append(s.count())
                    .append(",\"sector0\":").append(s.sector0())
                    .append(",\"readFromBlock\":").append(s.physicalBlock())
                    .append(",\"validated\":").append(s.validated())
                    .append(",\"entries\":[");
            for (int j = 0; j < s.entries().size(); j++) {
                EntryInfo e = s.entries().get(j);
                LogEntry le = e.entry();
                if (j > 0) b.append(',');
                b.append("{\"index\":").append(e.index())
                        .append(",\"sourceSector\":").append(le.sourceSector())
                        .append(",\"destSector\":").append(le.destSector())
                        .append(",\"size\":").append(le.sizeBytes())
                        .append(",\"checksum\":").append(Integer.toUnsignedLong(le.checksum()))
                        .append(",\"actualChecksum\":").append(Integer.toUnsignedLong(e.actualChecksum()))
                        .append(",\"dataBlock\":").append(e.dataBlock())
                        .append(",\"verdict\":").append(str(e.verdict())).append('}');
            }
            b.append("]}");
        }
        b.append("]}");
        return b.toString();
    }

    /** A JSON string literal (shared with bowctl's --json output). */
    public static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
                }
            }
        }
        return b.append('"').toString();
    }
}
