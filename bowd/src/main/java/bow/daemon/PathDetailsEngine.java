package bow.daemon;

import bow.blockdev.BlockDevice;
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

    public PathDetailsEngine(ModeEngine engine, Path device, Path cow) {
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
        return new EngineStatus(s.mode(), s.state(), s.device(), s.deviceSize(), s.blockSize(), s.freeBytes(),
                s.backedUpBytes(), s.logSequence(), s.logEntries(), s.rangeCount(), d);
    }

    @Override public void startCheckpoint() throws IOException { engine.startCheckpoint(); }
    @Override public void commit() throws IOException { engine.commit(); }
    @Override public void rollback() throws IOException { engine.rollback(); }
    @Override public List<RangeRecord> ranges() { return engine.ranges(); }
    @Override public List<RangeRecord> ranges(long fromOffset, int limit) { return engine.ranges(fromOffset, limit); }
    @Override public void close() throws IOException { engine.close(); }
}
