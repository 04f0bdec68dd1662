package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.JitterDevice;
import bow.blockdev.testing.PowerSupply;
import bow.engine.SnapshotEngine;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Shared mode under several writer threads at once, with snapshots created and deleted while
 * they write, and power cuts (origin and COW on one {@link PowerSupply}) at random operations
 * and at flush boundaries; then rollbacks to a snapshot, themselves cut and run again.
 *
 * <p>Every 512-byte sector a test write puts down is tagged with the write's id, so each sector
 * of a view traces back to the one write (or discard, or the initial image) it came from, and
 * each view is checked as a per-sector register: a sector may hold any write that covered it,
 * except one superseded by a covering write that must be there (without a cut: every completed
 * write; after a cut: every write acknowledged before an acknowledged flush started). A snapshot
 * created while writers ran holds, per sector, an origin write that started before the create
 * returned, and no older value than one that completed before the create started; it never
 * changes afterwards, also not across a cut once its create returned.
 *
 * <p>Seeds: {@code bow.test.seeds} for the crash-free run, {@code bow.test.crashes} for the cuts;
 * {@code -Dbow.test.seed=N} replays one seed's workload (thread interleavings are not
 * reproducible; the seed is printed on failure).
 */
class SharedConcurrencyTest {
    static final int S = 512;
    static final int THREADS = 3;
    static final int ORIGIN = 0, COW = 1;

    // ------------------------------------------------------------------ history

    enum Kind { WRITE, DISCARD, FLUSH }

    /** One request; {@code view} -1 is the origin, else a snapshot ID; {@code end} is MAX_VALUE until acknowledged. */
    static final class Op {
        final long id;
        final Kind kind;
        final int view;
        final long off;
        final int len;
        final long start;
        final String thread = Thread.currentThread().getName();
        volatile long end = Long.MAX_VALUE;

        Op(long id, Kind kind, int view, long off, int len, long start) {
            this.id = id; this.kind = kind; this.view = view; this.off = off; this.len = len; this.start = start;
        }

        boolean acked() { return end != Long.MAX_VALUE; }

        boolean covers(int sector) { return kind != Kind.FLUSH && off <= (long) sector * S && (long) sector * S < off + len; }

        @Override public String toString() {
            return kind + "#" + id + " by " + thread + (view < 0 ? " origin" : " snapshot-" + view) + " [" + off + ",+" + len + ") t="
                    + start + ".." + (acked() ? end : "unacked");
        }
    }

    static final class History {
        static final AtomicLong ids = new AtomicLong();   // unique across histories: an old tag is never a new write
        final AtomicLong clock;
        final ConcurrentLinkedQueue<Op> ops = new ConcurrentLinkedQueue<>();
        final ConcurrentHashMap<Long, Op> byId = new ConcurrentHashMap<>();

        History(AtomicLong clock) { this.clock = clock; }

        Op begin(Kind k, int view, long off, int len) {
            Op o = new Op(ids.incrementAndGet(), k, view, off, len, clock.incrementAndGet());
            ops.add(o);
            byId.put(o.id, o);
            return o;
        }

        void done(Op o) { o.end = clock.incrementAndGet(); }

        /** The latest start of an acknowledged flush: every op acknowledged before it must be durable. */
        long durableBefore() {
            long t = -1;
            for (Op o : ops) if (o.kind == Kind.FLUSH && o.acked()) t = Math.max(t, o.start);
            return t;
        }
    }

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
     * Checks {@code img} sector by sector against the ops {@code h} made to {@code view} on top of
     * {@code base}: each sector holds the base or an op allowed by {@code mayHold}, and no op in
     * {@code mustHave} that started after that value's op completed.
     */
    static void checkRegister(String what, byte[] img, byte[] base, History h, int view, Predicate<Op> mayHold, Predicate<Op> mustHave) {
        int sectors = img.length / S;
        List<List<Op>> cov = new ArrayList<>(sectors);
        for (int s = 0; s < sectors; s++) cov.add(new ArrayList<>());
        for (Op o : h.ops) {
            if (o.kind == Kind.FLUSH || o.view != view || !mayHold.test(o)) continue;
            for (long s = o.off / S; s < (o.off + o.len) / S; s++) cov.get((int) s).add(o);
        }
        ByteBuffer bb = ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer expect = ByteBuffer.allocate(S).order(ByteOrder.LITTLE_ENDIAN);
        for (int s = 0; s < sectors; s++) {
            int at = s * S;
            long valueEnd = Long.MIN_VALUE;    // when the op that explains the sector completed
            String value = null;
            if (Arrays.equals(img, at, at + S, base, at, at + S)) {
                valueEnd = -1;
                value = "the base image";
            }
            if (allZero(img, at)) {
                for (Op o : cov.get(s)) if (o.kind == Kind.DISCARD && o.end > valueEnd) { valueEnd = o.end; value = o.toString(); }
                if (value == null) fail(what + ": sector " + s + " reads as zeros, but no discard covered it");
            } else if (value == null) {
                long id = bb.getLong(at);
                Op o = h.byId.get(id);
                if (o == null || o.kind != Kind.WRITE || o.view != view || !o.covers(s) || !mayHold.test(o)) {
                    fail(what + ": sector " + s + " holds data no allowed write to this view put there (tag " + id + ", " + o + ")");
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
                    fail(what + ": sector " + s + " holds " + value + ", but " + m + " started after that completed and must be there; ops on it:" + ctx);
                }
            }
        }
    }

    static boolean allZero(byte[] b, int at) {
        for (int i = at; i < at + S; i++) if (b[i] != 0) return false;
        return true;
    }

    // ------------------------------------------------------------------ workload

    /** A snapshot the test made: what it must read (null while its content is only known as a register). */
    static final class Snap {
        final int id;
        final boolean writable;
        final long createStart, createEnd;   // 0, 0 for the ones made before the workload
        volatile byte[] expect;              // read-only snapshots: exact content
        volatile boolean deleteStarted, deleted;

        Snap(int id, boolean writable, long createStart, long createEnd, byte[] expect) {
            this.id = id; this.writable = writable; this.createStart = createStart; this.createEnd = createEnd; this.expect = expect;
        }

        @Override public String toString() { return "snapshot-" + id + (writable ? " (writable)" : "") + " created t=" + createStart + ".." + createEnd; }
    }

    /** The test's view of one run: the snapshots, the history, and whether a create was cut short. */
    static final class World {
        final AtomicLong clock = new AtomicLong();
        final History h = new History(clock);
        final Map<Integer, Snap> snaps = new ConcurrentHashMap<>();
        volatile boolean createInFlight;
        volatile Snap deleteInFlight;
    }

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

    static int intProp(String name, int def) {
        String v = System.getProperty(name);
        if (v == null || v.isBlank()) return def;
        return Integer.parseInt(v.trim());
    }

    static BlockDevice view(SharedEngine e, int id) {
        BlockDevice d = e.exports().get(id < 0 ? "" : "snapshot-" + id);
        if (d == null) throw new AssertionError("no export for " + (id < 0 ? "the origin" : "snapshot-" + id) + "; exports: " + e.exports().keySet());
        return d;
    }

    static byte[] readAll(BlockDevice d) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) d.size());
        d.read(0, b);
        return b.array();
    }

    /**
     * Writers on the origin and on the writable snapshots, and one admin thread that creates and
     * deletes snapshots between them. Returns the first unexpected failure or null; with
     * {@code cutExpected} an IOException ends a thread quietly.
     */
    static Throwable runWorkload(long seed, SharedEngine e, World w, int size, int opsPerThread, boolean admin, boolean cutExpected)
            throws InterruptedException {
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int tid = t;
            ts.add(new Thread(() -> {
                Random r = new Random(seed * 31 + tid);
                try {
                    for (int k = 0; k < opsPerThread; k++) oneOp(r, e, w, size);
                } catch (IOException x) {
                    if (!cutExpected) errors.add(x);
                } catch (Throwable x) {
                    errors.add(x);
                }
            }, "writer-" + t));
        }
        if (admin) {
            ts.add(new Thread(() -> {
                Random r = new Random(seed * 31 + 99);
                try {
                    for (int k = 0; k < 4; k++) {
                        Thread.sleep(r.nextInt(8));
                        adminOp(r, e, w);
                    }
                } catch (IOException x) {
                    if (!cutExpected) errors.add(x);
                } catch (Throwable x) {
                    errors.add(x);
                }
            }, "admin"));
        }
        ts.forEach(Thread::start);
        for (Thread t : ts) {
            t.join(120_000);
            if (t.isAlive()) return new AssertionError(t.getName() + " is stuck");
        }
        return errors.peek();
    }

    static void oneOp(Random r, SharedEngine e, World w, int size) throws IOException {
        int sectors = size / S;
        int region = r.nextInt(3) != 0 ? Math.min(sectors, 128) : sectors;   // a hot region, so requests race for chunks
        int first = r.nextInt(region);
        int n = Math.min(1 + (r.nextInt(4) == 0 ? r.nextInt(48) : r.nextInt(8)), sectors - first);
        long off = (long) first * S;
        int len = n * S;
        List<Snap> writable = new ArrayList<>();
        for (Snap s : w.snaps.values()) if (s.writable && !s.deleteStarted) writable.add(s);
        int p = r.nextInt(20);
        if (p < 11 || (writable.isEmpty() && p < 15)) {
            Op o = w.h.begin(Kind.WRITE, -1, off, len);
            view(e, -1).write(off, ByteBuffer.wrap(tagged(o)));
            w.h.done(o);
        } else if (p < 15) {
            Snap s = writable.get(r.nextInt(writable.size()));
            Op o = w.h.begin(Kind.WRITE, s.id, off, len);
            BlockDevice d = e.exports().get("snapshot-" + s.id);
            try {
                if (d == null) throw new IOException("snapshot-" + s.id + " has no export");
                d.write(off, ByteBuffer.wrap(tagged(o)));
            } catch (IOException x) {
                if (s.deleteStarted) return;   // deleted under the writer: the write may fail
                throw x;
            }
            w.h.done(o);
        } else if (p < 16) {
            Op o = w.h.begin(Kind.DISCARD, -1, off, len);
            view(e, -1).discard(off, len);
            w.h.done(o);
        } else if (p < 18) {
            Op o = w.h.begin(Kind.FLUSH, -1, 0, 0);
            view(e, -1).flush();
            w.h.done(o);
        } else {
            // a read-only snapshot never changes, whatever the origin writers do meanwhile
            List<Snap> fixed = new ArrayList<>();
            for (Snap s : w.snaps.values()) if (!s.writable && !s.deleteStarted && s.expect != null) fixed.add(s);
            if (fixed.isEmpty()) return;
            Snap s = fixed.get(r.nextInt(fixed.size()));
            ByteBuffer b = ByteBuffer.allocate(len);
            BlockDevice d = e.exports().get("snapshot-" + s.id);
            if (d == null || s.deleteStarted) return;
            try {
                d.read(off, b);
            } catch (IOException x) {
                if (s.deleteStarted) return;   // deleted under the reader
                throw x;
            }
            if (!Arrays.equals(b.array(), 0, len, s.expect, (int) off, (int) off + len)) {
                int at = Arrays.mismatch(b.array(), Arrays.copyOfRange(s.expect, (int) off, (int) off + len));
                throw new AssertionError(s + " changed while origin writers ran: byte " + (off + at) + " of a read [" + off + ",+" + len + ")");
            }
        }
    }

    static void adminOp(Random r, SharedEngine e, World w) throws IOException {
        List<Snap> live = new ArrayList<>();
        for (Snap s : w.snaps.values()) if (!s.deleteStarted) live.add(s);
        if (live.size() > 1 && r.nextInt(3) == 0) {
            Snap s = live.get(r.nextInt(live.size()));
            s.deleteStarted = true;
            w.deleteInFlight = s;
            e.deleteSnapshot(Integer.toString(s.id));
            s.deleted = true;
            w.deleteInFlight = null;
            assertFalse(e.exports().containsKey("snapshot-" + s.id), "a deleted snapshot's export is gone");
        } else {
            long t0 = w.clock.incrementAndGet();
            w.createInFlight = true;
            int id = e.createSnapshot(r.nextBoolean() ? "mid-" + t0 : null, false);
            long t1 = w.clock.incrementAndGet();
            Snap s = new Snap(id, false, t0, t1, null);
            w.snaps.put(id, s);
            w.createInFlight = false;
            s.expect = readAll(view(e, id));   // a cut may come first: then its content is checked as a register only
        }
    }

    /** A snapshot created at [createStart, createEnd] while origin writers ran: a register of the origin's ops at that moment. */
    static void checkCreatedDuring(Snap s, byte[] img, byte[] init, History h) {
        checkRegister(s + " at its creation", img, init, h, -1, o -> o.start < s.createEnd, o -> o.acked() && o.end < s.createStart);
    }

    static int chunkSectors(Random r) { return new int[] {8, 8, 16, 32}[r.nextInt(4)]; }

    static byte[] random(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    /** Makes 1..4 snapshots before the workload (some writable); all read as {@code init}. */
    static void initialSnapshots(Random r, SharedEngine e, World w, byte[] init) throws IOException {
        int n = 1 + r.nextInt(4);
        for (int i = 0; i < n; i++) {
            boolean writable = r.nextInt(3) == 0;
            int id = e.createSnapshot(i == 0 ? "first" : null, writable);
            w.snaps.put(id, new Snap(id, writable, 0, 0, writable ? null : init));
        }
    }

    /** What every snapshot the test knows must read now; {@code must} picks the writes that may not be lost. */
    static void checkSnapshots(String when, SharedEngine e, World w, byte[] init, Predicate<Op> must) throws IOException {
        Set<Integer> live = new HashSet<>();
        for (SnapshotEngine.SnapshotInfo i : e.listSnapshots()) live.add(i.id());
        for (Snap s : w.snaps.values()) {
            if (s.deleted) {
                // a create cut short may have reused the ID once the delete was reclaimed
                assertFalse(live.contains(s.id) && !w.createInFlight, when + ": " + s + " was deleted (acknowledged) but is still listed");
                continue;
            }
            if (!live.contains(s.id)) {
                assertTrue(s.deleteStarted, when + ": " + s + " is gone, but nobody deleted it");
                continue;
            }
            byte[] img = readAll(view(e, s.id));
            if (s.writable) checkRegister(when + ": " + s, img, init, w.h, s.id, o -> true, must);
            else if (s.expect != null) assertArrayEquals(s.expect, img, when + ": " + s + " reads as when it was created");
            if (s.createEnd > 0) checkCreatedDuring(s, s.expect != null ? s.expect : img, init, w.h);
        }
        for (int id : live) {
            if (w.snaps.containsKey(id)) continue;
            assertTrue(w.createInFlight, when + ": snapshot " + id + " exists, but no create of it was in flight");
        }
    }

    // ------------------------------------------------------------------ tests

    /** No cut: every view matches the register model, before and after a reopen from disk; delete reclaims. */
    @Test
    void concurrentWritersCreatesAndDeletesMatchTheModel() {
        seeds("shared concurrent model", intProp("bow.test.seeds", 8), seed -> {
            Random r = new Random(seed);
            int cs = chunkSectors(r), size = S * (512 + r.nextInt(512));
            byte[] init = random(r, size);
            MemoryBlockDevice origin = new MemoryBlockDevice(init);
            MemoryBlockDevice cow = new MemoryBlockDevice(size * 8 + (64 << 10));
            SharedEngine e = SharedEngine.open(new JitterDevice(origin, 150), new JitterDevice(cow, 150), new SharedEngine.Options(cs));
            World w = new World();
            initialSnapshots(r, e, w, init);
            Throwable err = runWorkload(seed, e, w, size, 40, true, false);
            if (err != null) throw new AssertionError("a request failed: " + err, err);
            checkRegister("origin", readAll(view(e, -1)), init, w.h, -1, o -> true, Op::acked);
            checkSnapshots("after the workload", e, w, init, Op::acked);
            byte[] originNow = readAll(view(e, -1));
            e.close();
            SharedEngine again = SharedEngine.open(origin, cow, new SharedEngine.Options(0));
            assertArrayEquals(originNow, readAll(view(again, -1)), "origin after a reopen");
            checkSnapshots("after a reopen", again, w, init, Op::acked);
            again.close();
        });
    }

    /**
     * Power cut at a random mutating op or at the start of a random flush while the threads
     * write and the admin thread creates and deletes: after the reboot every acknowledged
     * create and delete holds, read-only snapshots are exact, and writes acknowledged before an
     * acknowledged flush survive on every view. Then a rollback to one of the snapshots, cut a
     * few times and run again, ends with the origin equal to it and the others untouched.
     */
    @Test
    void powerCutsUnderConcurrentWritesCreatesDeletesAndRollbacks() {
        seeds("shared concurrent power cuts", intProp("bow.test.crashes", 30) / 2, seed -> {
            Random r = new Random(seed);
            int cs = chunkSectors(r), size = S * (512 + r.nextInt(512));
            byte[] init = random(r, size);
            PowerSupply p = new PowerSupply(init, new byte[size * 8 + (64 << 10)]);
            SharedEngine e = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(cs));
            World w = new World();
            initialSnapshots(r, e, w, init);
            if (r.nextBoolean()) p.armOps(r.nextInt(500), r);
            else p.armFlush(r.nextInt(30), r);
            Throwable err = runWorkload(seed, e, w, size, 40, true, true);
            if (err != null) throw new AssertionError("not a power cut: " + err, err);
            if (!p.dead()) p.cutNow(r);   // the armed cut did not come: cut after the workload
            p.reboot();
            SharedEngine after = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(0));
            long durable = w.h.durableBefore();
            Predicate<Op> must = o -> o.acked() && o.end < durable;
            byte[] originNow = readAll(view(after, -1));
            checkRegister("origin after the cut", originNow, init, w.h, -1, o -> true, must);
            checkSnapshots("after the cut", after, w, init, must);
            rollbackWithCuts(r, p, after, w);
        });
    }

    /**
     * Rolls the origin back to a live snapshot with up to three cuts on the way, reopening and
     * running it again each time (the reopen already resumes a recorded rollback; running it
     * again for the same target must be harmless).
     */
    static void rollbackWithCuts(Random r, PowerSupply p, SharedEngine e, World w) throws Exception {
        Map<Integer, byte[]> images = new java.util.HashMap<>();
        for (SnapshotEngine.SnapshotInfo i : e.listSnapshots()) images.put(i.id(), readAll(view(e, i.id())));
        if (images.isEmpty()) return;
        List<Integer> ids = new ArrayList<>(images.keySet());
        int target = ids.get(r.nextInt(ids.size()));
        for (int attempt = 0; ; attempt++) {
            assertTrue(attempt < 10, "the rollback never finished");
            if (attempt < 3 && r.nextBoolean()) {
                if (r.nextBoolean()) p.armOps(r.nextInt(200), r);
                else p.armFlush(r.nextInt(12), r);
            }
            try {
                e.rollbackTo(Integer.toString(target));
                e.awaitRollback();
                p.disarm();
                // the armed cut may still come from a background thread (the reclaimer) after the rollback's last step
                if (p.dead()) throw new IOException("cut by a background thread after the rollback finished");
                break;
            } catch (IOException cut) {
                assertTrue(p.dead(), "only the power cut may fail the rollback: " + cut);
                p.reboot();
                e = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(0));
                // a recorded rollback resumes at open: the origin reads as the target at once (then naming it again is harmless)
                if ("ROLLING_BACK".equals(e.status().state())) assertArrayEquals(images.get(target), readAll(view(e, -1)), "the origin after a cut during the rollback");
                for (Map.Entry<Integer, byte[]> s : images.entrySet()) {
                    assertArrayEquals(s.getValue(), readAll(view(e, s.getKey())), "snapshot-" + s.getKey() + " after a cut during the rollback");
                }
            }
        }
        assertArrayEquals(images.get(target), readAll(view(e, -1)), "the origin is snapshot-" + target + " after the rollback");
        for (Map.Entry<Integer, byte[]> s : images.entrySet()) {
            assertArrayEquals(s.getValue(), readAll(view(e, s.getKey())), "snapshot-" + s.getKey() + " after the rollback");
        }
        view(e, -1).flush();
        p.reboot();
        SharedEngine fin = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(0));
        assertArrayEquals(images.get(target), readAll(view(fin, -1)), "the rolled-back origin is durable");
        for (Map.Entry<Integer, byte[]> s : images.entrySet()) {
            assertArrayEquals(s.getValue(), readAll(view(fin, s.getKey())), "snapshot-" + s.getKey() + " durable after the rollback");
        }
        fin.close();
    }
}
