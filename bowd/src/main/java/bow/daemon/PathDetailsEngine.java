package bow.daemon;

import bow.blockdev.BlockDevice;
import bow.blockdev.CountingDevice;
import bow.engine.ModeEngine;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Adds the daemon's device and COW paths to the status details ({@code device_path}, {@code cow_path}),
 * so that {@code bowctl checkpoint start} can write them into the checkpoint record: recovery rolls
 * back from the record alone, with no daemon.
 */
public final class PathDetailsEngine implements ModeEngine {
    private final ModeEngine engine;
    private final Path device;
    private final Path cow;

    private final Map<String, CountingDevice> counters;

    public PathDetailsEngine(ModeEngine engine, Path device, Path cow) {
        this(engine, device, cow, Map.of());
    }

    /**
     * Also reports the I/O counts of the bottom devices: {@code io_flushes}, {@code io_writes},
     * {@code io_reads} (all devices together) and the same per device role ({@code device_flushes},
     * {@code cow_flushes}, ...), so a benchmark can tell the flushes per backed-up write.
     */
    public PathDetailsEngine(ModeEngine engine, Path device, Path cow, Map<String, CountingDevice> counters) {
        this.counters = Map.copyOf(counters);
        this.engine = engine;
        this.device = device.toAbsolutePath();
        this.cow = cow == null ? null : cow.toAbsolutePath();
    }

    @Override public String mode() { return engine.mode(); }
    @Override public Map<String, BlockDevice> exports() { return engine.exports(); }

    @Override
    public EngineStatus status() {
        EngineStatus s = engine.status();
        Map<String, String> d = new LinkedHashMap<>(s.details());
        d.put("device_path", device.toString());
        if (cow != null) d.put("cow_path", cow.toString());
        if (!counters.isEmpty()) {
            long f = 0, w = 0, r = 0;
            for (Map.Entry<String, CountingDevice> e : new java.util.TreeMap<>(counters).entrySet()) {
                CountingDevice c = e.getValue();
                d.put(e.getKey() + "_flushes", Long.toString(c.flushes()));
                d.put(e.getKey() + "_writes", Long.toString(c.writes()));
                f += c.flushes();
                w += c.writes();
                r += c.reads();
            }
            d.put("io_flushes", Long.toString(f));
            d.put("io_writes", Long.toString(w));
            d.put("io_reads", Long.toString(r));
        }
        return new EngineStatus(s.mode(), s.state(), s.device(), s.deviceSize(), s.blockSize(), s.freeBytes(),
                s.backedUpBytes(), s.logSequence(), s.logEntries(), s.rangeCount(), d);
    }

    @Override public void startCheckpoint() throws IOException { engine.startCheckpoint(); }
    @Override public void commit() throws IOException { engine.commit(); }
    @Override public void rollback() throws IOException { engine.rollback(); }
    @Override public List<RangeRecord> ranges() { return engine.ranges(); }
    @Override public List<RangeRecord> ranges(long fromOffset, int limit) { return engine.ranges(fromOffset, limit); }
    @Override public java.util.Optional<bow.engine.SnapshotEngine> snapshots() { return engine.snapshots(); }
    @Override public void close() throws IOException { engine.close(); }
}
