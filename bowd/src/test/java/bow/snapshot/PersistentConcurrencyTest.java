package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Persistent mode under several writer threads at once: writes and discards on overlapping
 * regions of the origin (and of a writable snapshot), random latency on every device call,
 * snapshot readers checking the snapshot never changes; then power cuts at random operations
 * and at flush boundaries (origin and COW on one supply), and cuts during the merge.
 *
 * <p>Every 512-byte sector a test write puts down is tagged with the write's id, so each sector
 * of a view can be traced to the one write (or discard, or the initial image) it came from.
 * The views are then checked as per-sector registers: a sector may hold any write that
 * covered it, except one that completed before another covering write that must be there
 * started (without a crash: every completed write; after a crash: every write acknowledged
 * before an acknowledged flush started).
 *
 * <p>Seeds: {@code bow.test.seeds} x 3 for the crash-free model, {@code bow.test.crashes} for
 * each power-cut test; {@code -Dbow.test.seed=N} replays one seed's workload (thread
 * interleavings are not reproducible; the seed is printed on failure).
 */
class PersistentConcurrencyTest {
    static final int S = 512;
    static final int THREADS = 4;

    // ------------------------------------------------------------------ history

    enum Kind { WRITE, DISCARD, FLUSH }

    /** One request as the test issued it; {@code end} is Long.MAX_VALUE until it is acknowledged. */
    static final class Op {
        final long id;
        final Kind kind;
        final boolean snapshot;
        final long off;
        final int len;
        final long start;
        final String thread = Thread.currentThread().getName();
        volatile long end = Long.MAX_VALUE;

        Op(long id, Kind kind, boolean snapshot, long off, int len, long start) {
            this.id = id; this.kind = kind; this.snapshot = snapshot; this.off = off; this.len = len; this.start = start;
        }

        boolean covers(int sector) { return kind != Kind.FLUSH && off <= (long) sector * S && (long) sector * S < off + len; }

        @Override public String toString() {
            return kind + "#" + id + " by " + thread + (snapshot ? " snapshot" : " origin") + " [" + off + ",+" + len + ") t=" + start + ".."
                    + (end == Long.MAX_VALUE ? "unacked" : end);
        }
    }

    static final class History {
        final AtomicLong clock = new AtomicLong();
        /** Ids are unique across histories, so a tag left in a base image is never taken for a new write. */
        static final AtomicLong ids = new AtomicLong();
        final ConcurrentLinkedQueue<Op> ops = new ConcurrentLinkedQueue<>();
        final ConcurrentHashMap<Long, Op> byId = new ConcurrentHashMap<>();

        Op begin(Kind k, boolean snapshot, long off, int len) {
            Op o = new Op(ids.incrementAndGet(), k, snapshot, off, len, clock.incrementAndGet());
            ops.add(o);
            byId.put(o.id, o);
            return o;
        }

        void done(Op o) { o.end = clock.incrementAndGet(); }

        /** The latest start of an acknowledged flush: every op acknowledged before it must be durable. */
        long durableBefore() {
            long t = -1;
            for (Op o : ops) if (o.kind == Kind.FLUSH && o.end != Long.MAX_VALUE) t = Math.max(t, o.start);
            return t;
        }
    }

    /** The content of sector {@code sector} as written by op {@code id}: id, sector, then a pattern of both. */
    static void fillSector(ByteBuffer b, int at, long id, long sector) {
        long x = id * 0x9E3779B97F4A7C15L ^ (sector + 1) * 0xC2B2AE3D27D4EB4FL;
        b.putLong(at, id);
        b.putLong(at + 8, sector);
        for (int i = 16; i < S; i += 8) {
            x ^= x << 13; x ^= x >>> 7; x ^= x << 17;
            b.putLong(at + i, x);
        }
    }

    static byte[] tagged(Op o) {
        ByteBuffer b = ByteBuffer.allocate(o.len).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < o.len / S; i++) fillSector(b, i * S, o.id, o.off / S + i);
        return b.array();
    }

    /**
     * Checks {@code img} (one view) sector by sector against the ops of that view, on top of
     * {@code base}. {@code mustHave}: ops whose effect may not be lost.
     */
    static void checkRegister(String what, byte[] img, byte[] base, History h, boolean snapshotView, Predicate<Op> mustHave) {
        int sectors = img.length / S;
        List<List<Op>> cov = new ArrayList<>(sectors);
        for (int s = 0; s < sectors; s++) cov.add(new ArrayList<>());
        for (Op o : h.ops) {
            if (o.kind == Kind.FLUSH || o.snapshot != snapshotView) continue;
            for (long s = o.off / S; s < (o.off + o.len) / S; s++) cov.get((int) s).add(o);
        }
        ByteBuffer bb = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer expect = ByteBuffer.allocate(S).order(ByteOrder.LITTLE_ENDIAN);
        for (int s = 0; s < sectors; s++) {
            int at = s * S;
            // The sector may be explained several ways (a zero base sector, a discard); take the most recent.
            long valueEnd = Long.MIN_VALUE;
            String value = null;
            if (Arrays.equals(img, at, at + S, base, at, at + S)) {
                valueEnd = -1;
                value = "the base image";
            }
            if (allZero(img, at)) {
                for (Op o : cov.get(s)) {
                    if (o.kind == Kind.DISCARD && o.end > valueEnd) { valueEnd = o.end; value = o.toString(); }
                }
                if (value == null) fail(what + ": sector " + s + " reads as zeros, but no discard covered it");
            } else if (value == null) {
                long id = bb.getLong(at);
                Op o = h.byId.get(id);
                if (o == null || o.kind != Kind.WRITE || o.snapshot != snapshotView || !o.covers(s)) {
                    fail(what + ": sector " + s + " holds data no write to this view put there (tag " + id + ", " + o + ")");
                }
                fillSector(expect, 0, id, s);
                if (!Arrays.equals(img, at, at + S, expect.array(), 0, S)) fail(what + ": sector " + s + " holds a corrupted copy of " + o);
                valueEnd = o.end;
                value = o.toString();
            }
            for (Op m : cov.get(s)) {
                if (mustHave.test(m) && m.start > valueEnd) {
                    StringBuilder ctx = new StringBuilder();
                    for (Op o : cov.get(s)) ctx.append("\n  ").append(o);
                    for (Op o : h.ops) if (o.kind == Kind.FLUSH && o.end != Long.MAX_VALUE && o.start > m.end) { ctx.append("\n  first acked flush after: ").append(o); break; }
                    fail(what + ": sector " + s + " holds " + value + ", but " + m + " started after that completed and must be there; ops on it:" + ctx);
                }
            }
        }
    }

    /** Every origin chunk has at most one exception on disk (a second one would be merged over newer data). */
    static void assertNoDuplicateExceptions(byte[] cowImg, int cs) {
        int cb = cs * S, epa = PersistentFormat.exceptionsPerArea(cs);
        java.util.Map<Long, Long> seen = new java.util.HashMap<>();
        for (long a = 0; ; a++) {
            long at = PersistentFormat.areaLocation(epa, a) * cb;
            if (at + cb > cowImg.length) break;
            byte[] area = Arrays.copyOfRange(cowImg, (int) at, (int) at + cb);
            PersistentFormat.DiskException[] es = PersistentFormat.decodeArea(area, epa);
            for (PersistentFormat.DiskException e : es) {
                Long prev = seen.put(e.oldChunk(), e.newChunk());
                if (prev != null) fail("origin chunk " + e.oldChunk() + " has two exceptions: COW chunks " + prev + " and " + e.newChunk());
            }
            if (es.length < epa) break;
        }
    }

    static boolean allZero(byte[] b, int at) {
        for (int i = at; i < at + S; i++) if (b[i] != 0) return false;
        return true;
    }

    // ------------------------------------------------------------------ devices

    /** Random latency before each call, so the engine's threads interleave in many ways. */
    record Jitter(BlockDevice d) implements BlockDevice {
        static void pause() {
            ThreadLocalRandom r = ThreadLocalRandom.current();
            int p = r.nextInt(8);
            if (p == 0) LockSupport.parkNanos(20_000 + r.nextInt(150_000));
            else if (p == 1) Thread.yield();
        }
        @Override public long size() { return d.size(); }
        @Override public void read(long o, ByteBuffer b) throws IOException { pause(); d.read(o, b); }
        @Override public void write(long o, ByteBuffer b) throws IOException { pause(); d.write(o, b); }
        @Override public void discard(long o, long l) throws IOException { pause(); d.discard(o, l); }
        @Override public void flush() throws IOException { pause(); d.flush(); }
    }

    /** Origin and COW on one power supply; the cut comes after N mutating ops, or at the start of flush N. */
    static final class Machine {
        volatile PowerCutDevice origin, cow;
        private long opsLeft = Long.MAX_VALUE, flushesLeft = Long.MAX_VALUE;
        private Random crashRandom;

        Machine(byte[] o, byte[] c) { origin = new PowerCutDevice(o); cow = new PowerCutDevice(c); }

        synchronized void armOps(long n, Random r) { opsLeft = n; flushesLeft = Long.MAX_VALUE; crashRandom = r; }
        synchronized void armFlush(long n, Random r) { flushesLeft = n; opsLeft = Long.MAX_VALUE; crashRandom = r; }
        synchronized void disarm() { opsLeft = Long.MAX_VALUE; flushesLeft = Long.MAX_VALUE; }
        boolean dead() { return origin.isDead() || cow.isDead(); }

        synchronized void cutNow(Random r) {
            origin.crash(r);
            cow.crash(r);
        }

        synchronized void reboot() {
            origin = new PowerCutDevice(origin.durableImage());
            cow = new PowerCutDevice(cow.durableImage());
            disarm();
        }

        /** Counts a mutating op; cuts power (both devices) when the armed count runs out. */
        synchronized void tick(boolean flush) throws DeviceException {
            if (dead()) throw new DeviceException(Errno.EIO, "simulated power cut: device is gone");
            boolean cut = false;
            if (opsLeft != Long.MAX_VALUE && opsLeft-- <= 0) cut = true;
            if (flush && flushesLeft != Long.MAX_VALUE && flushesLeft-- <= 0) cut = true;
            if (cut) {
                origin.crash(crashRandom);
                cow.crash(crashRandom);
                throw new DeviceException(Errno.EIO, "simulated power cut (both devices)");
            }
        }

        BlockDevice originDev() { return new Jitter(new Plug(this, true)); }
        BlockDevice cowDev() { return new Jitter(new Plug(this, false)); }
    }

    /**
     * Routes to the machine's current device. The tick and the op are one atomic step, so a
     * cut never falls between them (a write that ticked is in the cache when the power goes).
     */
    record Plug(Machine m, boolean isOrigin) implements BlockDevice {
        PowerCutDevice d() { return isOrigin ? m.origin : m.cow; }
        @Override public long size() { return d().size(); }
        @Override public void read(long o, ByteBuffer b) throws IOException { d().read(o, b); }
        @Override public void write(long o, ByteBuffer b) throws IOException { synchronized (m) { m.tick(false); d().write(o, b); } }
        @Override public void discard(long o, long l) throws IOException { synchronized (m) { m.tick(false); d().discard(o, l); } }
        @Override public void flush() throws IOException { synchronized (m) { m.tick(true); d().flush(); } }
    }

    // ------------------------------------------------------------------ workload

    interface SeedBody { void run(long seed) throws Exception; }

    static void seeds(String what, int n, SeedBody body) {
        Long one = Long.getLong("bow.test.seed");
        long base = new Random().nextLong();
        long t0 = System.nanoTime();
        int count = one != null ? 1 : n;
        for (int i = 0; i < count; i++) {
            long seed = one != null ? one : base + i * 0x9E3779B97F4A7C15L;
            try {
                body.run(seed);
            } catch (Throwable t) {
                throw new AssertionError(what + ": seed " + seed + " failed (replay: -Dbow.test.seed=" + seed + "): " + t, t);
            }
        }
        System.out.printf("%s: %d seeds in %.1f s%n", what, count, (System.nanoTime() - t0) / 1e9);
    }

    /** What the threads may do. */
    record Workload(BlockDevice originView, BlockDevice snapView, boolean snapWrites, boolean snapReadsConstant,
                    byte[] init, int size, int opsPerThread) {}

    /**
     * Runs THREADS threads of random requests. Returns null, or the first unexpected failure.
     * With {@code crashExpected}, an IOException ends a thread quietly (the power went).
     */
    static Throwable runThreads(long seed, Workload w, History h, boolean crashExpected) throws InterruptedException {
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int id = t;
            ts.add(new Thread(() -> {
                Random r = new Random(seed * 31 + id);
                try {
                    for (int k = 0; k < w.opsPerThread(); k++) oneOp(r, w, h);
                } catch (IOException e) {
                    if (!crashExpected) errors.add(e);
                } catch (Throwable e) {
                    errors.add(e);
                }
            }, "writer-" + t));
        }
        ts.forEach(Thread::start);
        for (Thread t : ts) {
            t.join(60_000);
            if (t.isAlive()) return new AssertionError(t.getName() + " is stuck");
        }
        return errors.peek();
    }

    static void oneOp(Random r, Workload w, History h) throws IOException {
        int sectors = w.size() / S;
        // most requests land on a small hot region, so they overlap and race for the same chunks
        int region = r.nextInt(3) != 0 ? Math.min(sectors, 96) : sectors;
        int first = r.nextInt(region);
        int n = 1 + (r.nextInt(4) == 0 ? r.nextInt(64) : r.nextInt(8));
        n = Math.min(n, sectors - first);
        long off = (long) first * S;
        int len = n * S;
        int p = r.nextInt(20);
        if (p < 10 || (!w.snapWrites() && p < 13)) {
            Op o = h.begin(Kind.WRITE, false, off, len);
            w.originView().write(off, ByteBuffer.wrap(tagged(o)));
            h.done(o);
        } else if (p < 13) {
            Op o = h.begin(Kind.WRITE, true, off, len);
            w.snapView().write(off, ByteBuffer.wrap(tagged(o)));
            h.done(o);
        } else if (p < 15) {
            boolean snap = w.snapWrites() && r.nextInt(3) == 0;
            Op o = h.begin(Kind.DISCARD, snap, off, len);
            (snap ? w.snapView() : w.originView()).discard(off, len);
            h.done(o);
        } else if (p < 17) {
            Op o = h.begin(Kind.FLUSH, false, 0, 0);
            (r.nextBoolean() && w.snapView() != null ? w.snapView() : w.originView()).flush();
            h.done(o);
        } else if (w.snapReadsConstant()) {
            ByteBuffer b = ByteBuffer.allocate(len);
            w.snapView().read(off, b);
            if (!Arrays.equals(b.array(), 0, len, w.init(), (int) off, (int) off + len)) {
                int at = Arrays.mismatch(b.array(), Arrays.copyOfRange(w.init(), (int) off, (int) off + len));
                throw new AssertionError("a snapshot read while origin writes ran differs from the checkpoint image at byte "
                        + (off + at) + " (read [" + off + ",+" + len + "))");
            }
        } else {
            w.originView().read(off, ByteBuffer.allocate(len));
        }
    }

    static byte[] readAll(BlockDevice d) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) d.size());
        d.read(0, b);
        return b.array();
    }

    static byte[] random(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    static int chunkSectors(Random r) { return new int[] {1, 2, 8, 16}[r.nextInt(4)]; }

    static int originSize(Random r) { return S * (384 + r.nextInt(256)); }

    // ------------------------------------------------------------------ tests

    /** No crash: both views match the per-sector model; snapshot reads never change; merge or commit gives the right image. */
    @Test
    void concurrentWritersMatchTheModel() {
        seeds("concurrent model", TestProps.seeds() * 3, seed -> {
            Random r = new Random(seed);
            int cs = chunkSectors(r), size = originSize(r);
            boolean writable = r.nextBoolean();
            byte[] init = random(r, size);
            MemoryBlockDevice origin = new MemoryBlockDevice(init);
            long chunks = (size + cs * S - 1) / (cs * S);
            MemoryBlockDevice cow = new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(chunks, cs));
            PersistentEngine e = PersistentEngine.open(new Jitter(origin), new Jitter(cow), new PersistentEngine.Options(cs, false, writable));
            e.startCheckpoint();
            History h = new History();
            Workload w = new Workload(e.exports().get(""), e.exports().get("snapshot"), writable, !writable, init, size, 40);
            Throwable err = runThreads(seed, w, h, false);
            if (err != null) throw new AssertionError("a request failed: " + err, err);
            checkRegister("origin view", readAll(e.exports().get("")), init, h, false, o -> true);
            byte[] snap = readAll(e.exports().get("snapshot"));
            if (writable) checkRegister("snapshot view", snap, init, h, true, o -> true);
            else assertArrayEquals(init, snap, "the snapshot is the checkpoint image");
            assertNoDuplicateExceptions(cow.snapshot(), cs);
            // the same after a reload from disk
            PersistentEngine again = PersistentEngine.open(origin, cow, PersistentEngine.Options.defaults());
            assertArrayEquals(snap, readAll(again.exports().get("snapshot")), "snapshot after reload");
            if (r.nextBoolean()) {
                // online, with writers on the merged view from the moment the merge has begun
                History during = new History();
                Workload mw = new Workload(e.exports().get(""), null, false, false, snap, size, 25);
                Thread[] ws = new Thread[1];
                Throwable[] werr = new Throwable[1];
                boolean writers = r.nextBoolean();
                long ws0 = r.nextLong();
                e.rollback((done, total) -> {
                    if (!writers || ws[0] != null) return;
                    ws[0] = new Thread(() -> {
                        try {
                            werr[0] = runThreads(ws0, mw, during, false);
                        } catch (InterruptedException ie) {
                            werr[0] = ie;
                        }
                    });
                    ws[0].start();
                });
                if (ws[0] != null) ws[0].join(60_000);
                if (werr[0] != null) throw new AssertionError("a write through the merged view failed: " + werr[0], werr[0]);
                if (writers) checkRegister("origin after an online merge with writers", origin.snapshot(), snap, during, false, o -> true);
                if (!writers) assertArrayEquals(snap, origin.snapshot(), "online merge gives back the snapshot");
            } else {
                PersistentMerge.run(origin, cow, null);
                assertArrayEquals(snap, origin.snapshot(), "offline merge gives back the snapshot");
            }
        });
    }

    /**
     * Power cut at a random mutating op or at the start of a random flush, while the threads
     * write: the snapshot survives exactly, acknowledged-and-flushed writes survive on both
     * views, and the merge (itself cut, maybe more than once) gives back the snapshot.
     */
    @Test
    void powerCutsUnderConcurrentWritesAndDuringTheMerge() {
        seeds("concurrent power cuts", TestProps.crashes(), seed -> {
            Random r = new Random(seed);
            int cs = chunkSectors(r), size = originSize(r);
            boolean writable = r.nextInt(3) == 0;
            byte[] init = random(r, size);
            long chunks = (size + cs * S - 1) / (cs * S);
            Machine m = new Machine(init, new byte[(int) PersistentFormat.cowBytesFor(chunks, cs)]);
            PersistentEngine e = PersistentEngine.open(m.originDev(), m.cowDev(), new PersistentEngine.Options(cs, false, writable));
            e.startCheckpoint();
            if (r.nextBoolean()) m.armOps(r.nextInt(600), r);
            else m.armFlush(r.nextInt(40), r);
            History h = new History();
            Workload w = new Workload(e.exports().get(""), e.exports().get("snapshot"), writable, !writable, init, size, 40);
            Throwable err = runThreads(seed, w, h, true);
            if (err != null) throw new AssertionError("not a power cut: " + err, err);
            if (!m.dead()) m.cutNow(r);   // the armed cut did not come: cut power after the workload instead
            m.reboot();
            PersistentEngine after = PersistentEngine.open(m.originDev(), m.cowDev(), new PersistentEngine.Options(0, false, writable));
            assertEquals(PersistentEngine.State.CHECKPOINT, after.state(), "the checkpoint survives the cut");
            long durable = h.durableBefore();
            Predicate<Op> must = o -> o.end != Long.MAX_VALUE && o.end < durable;
            checkRegister("origin after the cut", readAll(after.exports().get("")), init, h, false, must);
            byte[] snap = readAll(after.exports().get("snapshot"));
            if (writable) checkRegister("snapshot after the cut", snap, init, h, true, must);
            else assertArrayEquals(init, snap, "the snapshot is exactly the checkpoint image after the cut");

            mergeWithCuts(r, m, snap, writable);
        });
    }

    /**
     * The merge, cut at random points a few times, resumed online (with writer threads on the
     * merged view, whose acknowledged-and-flushed writes must survive each cut) or offline.
     * In the end the origin is the snapshot (plus the writes made through the merged view).
     */
    static void mergeWithCuts(Random r, Machine m, byte[] snap, boolean writable) throws Exception {
        boolean online = r.nextBoolean();
        boolean writers = online && r.nextBoolean();
        byte[] base = snap;
        for (int attempt = 0; ; attempt++) {
            assertTrue(attempt < 30, "the merge never finished");
            boolean cut = attempt < 4;
            if (cut) {
                if (r.nextBoolean()) m.armOps(r.nextInt(120), r);
                else m.armFlush(r.nextInt(12), r);
            }
            History h = new History();
            try {
                if (online) {
                    PersistentEngine eng = PersistentEngine.open(m.originDev(), m.cowDev(), PersistentEngine.Options.defaults());
                    if (eng.state() == PersistentEngine.State.NO_SNAPSHOT) {
                        assertArrayEquals(base, m.origin.liveImage(), "a merge that finished just before the cut");
                        break;
                    }
                    assertNotEquals(PersistentEngine.State.INVALID, eng.state());
                    if (eng.state() == PersistentEngine.State.MERGING) {
                        assertArrayEquals(base, readAll(eng.exports().get("")), "the interrupted merge shows the merged view");
                    } else {
                        assertEquals(PersistentEngine.State.CHECKPOINT, eng.state());   // cut before the merge marker was down
                        assertArrayEquals(base, readAll(eng.exports().get("snapshot")), "the snapshot is intact");
                    }
                    Thread[] ws = new Thread[1];
                    Throwable[] werr = new Throwable[1];
                    Workload w = new Workload(eng.exports().get(""), null, false, false, base, base.length, 15);
                    long s = r.nextLong();
                    // Writers start once the merge has begun (the first progress report): a write made
                    // before, in CHECKPOINT, is one the rollback must undo, not keep.
                    PersistentMerge.Progress startWriters = (done, total) -> {
                        if (!writers || ws[0] != null) return;
                        ws[0] = new Thread(() -> {
                            try {
                                werr[0] = runThreads(s, w, h, true);
                            } catch (InterruptedException ie) {
                                werr[0] = ie;
                            }
                        });
                        ws[0].start();
                    };
                    IOException mergeErr = null;
                    try {
                        eng.rollback(startWriters);
                    } catch (IOException x) {
                        mergeErr = x;
                    }
                    if (ws[0] != null) ws[0].join(120_000);
                    if (werr[0] != null) throw new AssertionError("a write through the merged view failed: " + werr[0], werr[0]);
                    if (mergeErr != null) throw mergeErr;
                    // the merge is done; writers may still have run after it: the origin holds them
                    byte[] now = m.origin.liveImage();
                    checkRegister("origin after the online merge", now, base, h, false, o -> o.end != Long.MAX_VALUE);
                    if (m.dead()) {
                        // a writer ran into the armed cut after the merge had finished: what is durable?
                        m.reboot();
                        now = m.origin.durableImage();
                        long durable = h.durableBefore();
                        checkRegister("origin after a cut that followed the merge", now, base, h, false,
                                o -> o.end != Long.MAX_VALUE && o.end < durable);
                    }
                    base = now;
                } else {
                    PersistentMerge.run(m.originDev(), m.cowDev(), null);
                }
                break;
            } catch (IOException crashed) {
                assertTrue(m.dead(), "only the power cut may fail the merge: " + crashed);
                m.reboot();
                if (writers) {
                    // what the merged view must show now: every write acknowledged before an acknowledged flush
                    PersistentEngine look = PersistentEngine.open(m.originDev(), m.cowDev(), PersistentEngine.Options.defaults());
                    if (look.state() == PersistentEngine.State.CHECKPOINT) {
                        // cut before the merge marker was durable: the merge had not begun, nor had the writers
                        assertTrue(h.ops.isEmpty(), "writers ran before the merge began");
                        continue;
                    }
                    byte[] view = readAll(look.exports().get(""));
                    long durable = h.durableBefore();
                    checkRegister("merged view after a cut (attempt " + attempt + ", " + look.state() + ", chunk "
                            + (look.store() == null ? "-" : look.store().chunkSectors() + " sectors, " + look.store().exceptionCount() + " exceptions") + ")",
                            view, base, h, false, o -> o.end != Long.MAX_VALUE && o.end < durable);
                    base = view;
                }
            }
        }
        m.disarm();
        assertArrayEquals(base, m.origin.liveImage(), "origin equals the snapshot" + (writers ? " plus the writes made during the merge" : ""));
        if (writers) m.originDev().flush();   // their last writes need not be durable yet; the merge's own are
        m.reboot();
        assertArrayEquals(base, m.origin.durableImage(), "and durably so");
        assertNull(PersistentStore.load(m.cowDev(), 0, null), "no snapshot left on the COW");
    }
}
