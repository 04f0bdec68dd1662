package bow.engine;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Semaphore;

/**
 * A stand-in for shared mode for the daemon, control and CLI tests, written to the
 * {@link SnapshotEngine} contract: the origin in memory, each snapshot a full copy of it (no
 * tree, no COW device). Chunk counts are computed from the copies: a snapshot holds a chunk that
 * differs from the origin, alone unless another snapshot holds the same bytes there. The online
 * rollback runs on its own thread, chunk by chunk, and can be held back ({@link #holdRollback})
 * or made to fail ({@link #failRollbackAt}) so that progress and errors can be watched.
 */
public final class FakeSnapshotEngine implements ModeEngine, SnapshotEngine {
    public static final int CHUNK_BYTES = 4096;
    public static final int MAX_SNAPSHOTS = 64;

    private final MemoryBlockDevice origin;
    private final long totalChunks;
    private final TreeMap<Integer, Snap> snaps = new TreeMap<>();
    private volatile String state = "NO_CHECKPOINT";
    private volatile long rollbackDone, rollbackTotal;
    private volatile String rollbackError;
    private volatile Semaphore rollbackPermits;   // null: run freely
    private volatile long failAt = -1;
    private Thread rollbackThread;

    private final class Snap {
        final int id;
        final String name;
        final long created = System.currentTimeMillis();
        final boolean writable;
        final SnapshotDevice device;

        Snap(int id, String name, boolean writable, byte[] content) {
            this.id = id;
            this.name = name;
            this.writable = writable;
            this.device = new SnapshotDevice(content);
        }
    }

    /** A snapshot's export: fails every request once the snapshot is deleted. */
    public static final class SnapshotDevice implements BlockDevice {
        private final MemoryBlockDevice data;
        volatile boolean deleted;

        SnapshotDevice(byte[] content) { data = new MemoryBlockDevice(content); }

        private void check() throws DeviceException {
            if (deleted) throw new DeviceException(Errno.EIO, "the snapshot was deleted");
        }

        @Override public long size() { return data.size(); }
        @Override public void read(long offset, ByteBuffer dst) throws IOException { check(); data.read(offset, dst); }
        @Override public void write(long offset, ByteBuffer src) throws IOException { check(); data.write(offset, src); }
        @Override public void discard(long offset, long length) throws IOException { check(); data.discard(offset, length); }
        @Override public void flush() throws IOException { check(); }

        public byte[] content() { return data.snapshot(); }
    }

    /** @param size origin bytes, a multiple of {@link #CHUNK_BYTES}; @param totalChunks the fake store's size */
    public FakeSnapshotEngine(int size, long totalChunks) {
        if (size % CHUNK_BYTES != 0) throw new IllegalArgumentException("size not a multiple of the chunk");
        this.origin = new MemoryBlockDevice(size);
        this.totalChunks = totalChunks;
    }

    public MemoryBlockDevice origin() { return origin; }

    /** From now on the rollback copies one chunk per {@link #releaseRollback} permit. */
    public void holdRollback() { rollbackPermits = new Semaphore(0); }

    public void releaseRollback(int chunks) { rollbackPermits.release(chunks); }

    /** The next rollback fails with an I/O error when it reaches this chunk. */
    public void failRollbackAt(long chunk) { failAt = chunk; }

    public synchronized SnapshotDevice snapshotDevice(int id) { return snaps.get(id).device; }

    @Override public String mode() { return "shared"; }

    @Override
    public synchronized Map<String, BlockDevice> exports() {
        Map<String, BlockDevice> m = new LinkedHashMap<>();
        m.put("", origin);
        for (Snap s : snaps.values()) {
            m.put("snapshot-" + s.id, s.device);
            if (s.name != null) m.put("snapshot-" + s.name, s.device);
        }
        return m;
    }

    @Override
    public synchronized Set<String> readOnlyExports() {
        Set<String> ro = new HashSet<>();
        for (Snap s : snaps.values()) {
            if (s.writable) continue;
            ro.add("snapshot-" + s.id);
            if (s.name != null) ro.add("snapshot-" + s.name);
        }
        return ro;
    }

    @Override
    public synchronized EngineStatus status() {
        Map<String, String> d = new LinkedHashMap<>();
        d.put("chunk_size", Integer.toString(CHUNK_BYTES));
        d.put("snapshots", Integer.toString(snaps.size()));
        StoreUsage u = usage();
        d.put("free_chunks", Long.toString(u.freeChunks()));
        d.put("total_chunks", Long.toString(u.totalChunks()));
        if (rollbackTotal > 0) d.put("rollback", rollbackDone + "/" + rollbackTotal + " chunks");
        if (rollbackError != null) d.put("error", rollbackError);
        return new EngineStatus("shared", state, "fake", origin.size(), CHUNK_BYTES,
                u.freeChunks() * CHUNK_BYTES, 0, 0, 0, 0, d);
    }

    @Override
    public synchronized int createSnapshot(String name, boolean writable) {
        if (name != null && name.isEmpty()) name = null;
        if (name != null) {
            if (name.chars().allMatch(Character::isDigit)) throw new IllegalArgumentException("snapshot name '" + name + "' is all digits");
            for (Snap s : snaps.values()) {
                if (name.equals(s.name)) throw new IllegalArgumentException("a snapshot named '" + name + "' exists already (ID " + s.id + ")");
            }
        }
        if (snaps.size() >= MAX_SNAPSHOTS) throw new IllegalStateException("64 snapshots exist already: the limit of shared mode");
        int id = 0;
        while (snaps.containsKey(id)) id++;
        snaps.put(id, new Snap(id, name, writable, origin.snapshot()));
        if ("checkpoint".equals(name)) state = "CHECKPOINT";
        return id;
    }

    private Snap find(String idOrName) {
        if (!idOrName.isEmpty() && idOrName.chars().allMatch(Character::isDigit)) {
            Snap s = idOrName.length() <= 2 ? snaps.get(Integer.parseInt(idOrName)) : null;
            if (s == null) throw new IllegalArgumentException("no snapshot with ID " + idOrName);
            return s;
        }
        for (Snap s : snaps.values()) {
            if (idOrName.equals(s.name)) return s;
        }
        throw new IllegalArgumentException("no snapshot named '" + idOrName + "'");
    }

    @Override
    public synchronized List<SnapshotInfo> listSnapshots() {
        List<SnapshotInfo> out = new ArrayList<>();
        byte[] o = origin.snapshot();
        Map<Integer, byte[]> contents = new TreeMap<>();
        for (Snap s : snaps.values()) contents.put(s.id, s.device.content());
        for (Snap s : snaps.values()) {
            long alone = 0, shared = 0;
            byte[] mine = contents.get(s.id);
            for (int c = 0; c < o.length / CHUNK_BYTES; c++) {
                if (chunkEquals(mine, o, c)) continue;
                boolean withOther = false;
                for (Map.Entry<Integer, byte[]> e : contents.entrySet()) {
                    if (e.getKey() != s.id && chunkEquals(mine, e.getValue(), c)) withOther = true;
                }
                if (withOther) shared++; else alone++;
            }
            out.add(new SnapshotInfo(s.id, s.name, s.created, s.writable, alone, shared));
        }
        return out;
    }

    private static boolean chunkEquals(byte[] a, byte[] b, int chunk) {
        int from = chunk * CHUNK_BYTES;
        return Arrays.equals(a, from, from + CHUNK_BYTES, b, from, from + CHUNK_BYTES);
    }

    @Override
    public synchronized StoreUsage usage() {
        long used = 0;
        for (SnapshotInfo i : listSnapshots()) used += i.chunksAlone() + i.chunksShared();   // shared ones counted per holder: a fake
        return new StoreUsage(CHUNK_BYTES, Math.max(0, totalChunks - used), totalChunks);
    }

    @Override
    public synchronized void deleteSnapshot(String idOrName) {
        Snap s = find(idOrName);
        s.device.deleted = true;
        snaps.remove(s.id);
        if ("checkpoint".equals(s.name) && !"ROLLING_BACK".equals(state)) state = "NO_CHECKPOINT";
    }

    @Override
    public synchronized void rollbackTo(String idOrName) {
        Snap s = find(idOrName);
        if ("ROLLING_BACK".equals(state)) throw new IllegalStateException("a rollback is running already");
        String before = state;
        state = "ROLLING_BACK";
        rollbackError = null;
        rollbackDone = 0;
        rollbackTotal = origin.size() / CHUNK_BYTES;
        byte[] target = s.device.content();
        rollbackThread = new Thread(() -> runRollback(target, before), "fake-rollback");
        rollbackThread.setDaemon(true);
        rollbackThread.start();
    }

    private void runRollback(byte[] target, String before) {
        try {
            for (long c = 0; c < rollbackTotal; c++) {
                Semaphore p = rollbackPermits;
                if (p != null) p.acquire();
                if (c == failAt) throw new IOException("injected failure at chunk " + c);
                origin.write(c * CHUNK_BYTES, ByteBuffer.wrap(target, (int) c * CHUNK_BYTES, CHUNK_BYTES));
                rollbackDone = c + 1;
            }
            synchronized (this) { state = before; }
        } catch (IOException | InterruptedException e) {
            synchronized (this) {
                rollbackError = "rollback failed: " + e.getMessage();
                state = before;
            }
        }
    }

    /** Waits for the rollback thread (tests). */
    public void awaitRollback() throws InterruptedException {
        Thread t;
        synchronized (this) { t = rollbackThread; }
        if (t != null) t.join(30_000);
    }

    @Override public void startCheckpoint() {
        synchronized (this) {
            if (snaps.values().stream().anyMatch(s -> "checkpoint".equals(s.name))) throw new IllegalStateException("a checkpoint exists already");
        }
        createSnapshot("checkpoint", false);
    }

    @Override public void commit() {
        synchronized (this) {
            if (!"CHECKPOINT".equals(state)) throw new IllegalStateException("cannot commit: no checkpoint");
        }
        deleteSnapshot("checkpoint");
    }

    @Override public void rollback() { rollbackTo("checkpoint"); }

    @Override public void close() {}
}
