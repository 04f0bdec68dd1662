package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Power cuts with several writers at once: origin writers (each write followed by a flush, so
 * it is acknowledged as durable when the flush returns), a writer of a writable snapshot, and a
 * thread creating and deleting snapshots; the COW is cut at a random operation and the origin at
 * once after. Every sector is stamped (chunk, version), so after reopening each sector tells which
 * write it holds: never an older one than the last write acknowledged as durable, and in each
 * snapshot created before the cut, per chunk, what the origin held when it was created.
 */
class SharedEngineConcurrentCrashTest {
    static final int RUNS = Math.max(2, Integer.getInteger("bow.test.crashes", 20) / 5);
    static final int CS = 8, CB = CS * 512, CHUNKS = 48, WRITERS = 3;
    static final SharedStore.Tuning SMALL = new SharedStore.Tuning(4, Leaf.bytesFor(2, 32), 16, 16);

    record Write(int version, long start, long ack) {}
    record Snap(int id, long start, long end) {}

    final AtomicLong clock = new AtomicLong();

    static byte[] stamp(int chunk, int version) {
        ByteBuffer b = ByteBuffer.allocate(CB);
        while (b.hasRemaining()) b.putInt(chunk).putInt(version);
        return b.array();
    }

    /** The versions each sector of a chunk holds (each sector is written whole or not at all by a cut). */
    static int[] sectorVersions(byte[] chunk, int c, String what) {
        ByteBuffer b = ByteBuffer.wrap(chunk);
        int[] v = new int[CB / 512];
        for (int s = 0; s < v.length; s++) {
            v[s] = b.getInt(s * 512 + 4);
            for (int i = s * 512; i < (s + 1) * 512; i += 8) {
                assertEquals(c, b.getInt(i), what + ": chunk " + c + " sector " + s + " holds another chunk's data");
                assertEquals(v[s], b.getInt(i + 4), what + ": chunk " + c + " sector " + s + " torn inside a sector");
            }
        }
        return v;
    }

    @Test
    void powerCutWithConcurrentWriters() throws Exception {
        int cuts = 0;
        for (int run = 0; run < RUNS; run++) cuts += run(run) ? 1 : 0;
        assertTrue(cuts >= RUNS / 2, cuts + " of " + RUNS + " runs were cut");
    }

    boolean run(int run) throws Exception {
        Random rnd = new Random(run * 977L + 3);
        byte[] init = new byte[CHUNKS * CB];
        for (int c = 0; c < CHUNKS; c++) System.arraycopy(stamp(c, 0), 0, init, c * CB, CB);
        PowerCutDevice origin = new PowerCutDevice(init);
        PowerCutDevice cow = new PowerCutDevice(2048 * CB);
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), SMALL);
        int w = e.createSnapshot("w", true);
        clock.set(0);
        List<List<Write>> hist = new ArrayList<>();
        for (int c = 0; c < CHUNKS; c++) hist.add(Collections.synchronizedList(new ArrayList<>(List.of(new Write(0, 0, 0)))));
        List<List<Write>> whist = new ArrayList<>();
        for (int c = 0; c < CHUNKS; c++) whist.add(Collections.synchronizedList(new ArrayList<>(List.of(new Write(0, 0, 0)))));
        List<Snap> created = Collections.synchronizedList(new ArrayList<>());
        AtomicBoolean stop = new AtomicBoolean();
        cow.armCrashAfterOps(50 + rnd.nextInt(600), new Random(run));
        Random crashRnd = new Random(run + 1);
        Runnable cut = () -> { stop.set(true); origin.crash(crashRnd); };
        List<Thread> ts = new ArrayList<>();
        List<Throwable> unexpected = Collections.synchronizedList(new ArrayList<>());
        for (int t = 0; t < WRITERS; t++) {
            final int me = t;
            ts.add(new Thread(() -> {
                Random r = new Random(run * 10 + me);
                int[] ver = new int[CHUNKS];
                try {
                    while (!stop.get()) {
                        int c = me + WRITERS * r.nextInt(CHUNKS / WRITERS);
                        int v = ++ver[c];
                        long start = clock.incrementAndGet();
                        hist.get(c).add(new Write(v, start, Long.MAX_VALUE));   // started; acknowledged below
                        BlockDevice o = e.exports().get("");
                        o.write((long) c * CB, ByteBuffer.wrap(stamp(c, v)));
                        o.flush();
                        List<Write> h = hist.get(c);
                        h.set(h.size() - 1, new Write(v, start, clock.incrementAndGet()));
                    }
                } catch (IOException x) {
                    cut.run();
                } catch (Throwable x) { unexpected.add(x); cut.run(); }
            }));
        }
        ts.add(new Thread(() -> {
            Random r = new Random(run * 10 + 7);
            int v = 1000;
            try {
                while (!stop.get()) {
                    int c = r.nextInt(CHUNKS);
                    v++;
                    long start = clock.incrementAndGet();
                    whist.get(c).add(new Write(v, start, Long.MAX_VALUE));
                    BlockDevice s = e.exports().get("snapshot-" + w);
                    s.write((long) c * CB, ByteBuffer.wrap(stamp(c, v)));
                    s.flush();
                    List<Write> h = whist.get(c);
                    h.set(h.size() - 1, new Write(v, start, clock.incrementAndGet()));
                }
            } catch (IOException x) {
                cut.run();
            } catch (Throwable x) { unexpected.add(x); cut.run(); }
        }));
        ts.add(new Thread(() -> {
            Random r = new Random(run * 10 + 8);
            List<Integer> mine = new ArrayList<>();
            try {
                while (!stop.get()) {
                    if (mine.size() < 6 && r.nextInt(3) > 0) {
                        long start = clock.incrementAndGet();
                        int id = e.createSnapshot(null, false);
                        created.add(new Snap(id, start, clock.incrementAndGet()));
                        mine.add(id);
                    } else if (!mine.isEmpty()) {
                        int id = mine.remove(r.nextInt(mine.size()));
                        synchronized (created) { created.removeIf(s -> s.id() == id); }   // gone or not after a cut: not checked
                        e.deleteSnapshot(Integer.toString(id));
                    }
                    Thread.sleep(r.nextInt(5));
                }
            } catch (IOException | IllegalStateException x) {
                cut.run();
            } catch (Throwable x) { unexpected.add(x); cut.run(); }
        }));
        for (Thread t : ts) t.start();
        for (Thread t : ts) t.join(60_000);
        for (Thread t : ts) assertFalse(t.isAlive(), "a worker is stuck");
        if (!unexpected.isEmpty()) throw new AssertionError("worker failed", unexpected.get(0));
        if (!cow.isDead()) { cow.armCrashAfterOps(Long.MAX_VALUE, null); e.close(); return false; }
        try { e.close(); } catch (IOException expected) { /* the devices are dead */ }

        String when = "run " + run;
        SharedEngine r = SharedEngine.open(new PowerCutDevice(origin.durableImage()), new PowerCutDevice(cow.durableImage()),
                new SharedEngine.Options(CS), SMALL);
        SharedTree.CheckResult ck = r.store().check();
        assertTrue(ck.clean(), when + ": " + ck.problems());
        BlockDevice o = r.exports().get("");
        for (int c = 0; c < CHUNKS; c++) {
            List<Write> h = new ArrayList<>(hist.get(c));
            int durable = 0;
            for (Write x : h) if (x.ack() != Long.MAX_VALUE) durable = x.version();
            for (int v : sectorVersions(read(o, c), c, when + " origin")) {
                assertTrue(v >= durable, when + ": origin chunk " + c + " lost its durable version " + durable + " (holds " + v + ")");
            }
        }
        BlockDevice ws = r.exports().get("snapshot-" + w);
        assertNotNull(ws, when + ": the writable snapshot");
        for (int c = 0; c < CHUNKS; c++) {
            List<Write> h = new ArrayList<>(whist.get(c));
            int durable = 0;
            for (Write x : h) if (x.ack() != Long.MAX_VALUE) durable = x.version();
            for (int v : sectorVersions(read(ws, c), c, when + " snapshot w")) {
                boolean ok = v == durable || h.stream().anyMatch(x -> x.version() == v && x.ack() == Long.MAX_VALUE)
                        || (durable == 0 && v == 0);
                assertTrue(ok, when + ": writable snapshot chunk " + c + " holds " + v + ", durable " + durable);
            }
        }
        List<Snap> snaps;
        synchronized (created) { snaps = new ArrayList<>(created); }
        for (Snap s : snaps) {
            BlockDevice d = r.exports().get("snapshot-" + s.id());
            assertNotNull(d, when + ": snapshot " + s.id() + " was created before the cut");
            for (int c = 0; c < CHUNKS; c++) {
                List<Integer> ok = acceptable(new ArrayList<>(hist.get(c)), s);
                for (int v : sectorVersions(read(d, c), c, when + " snapshot " + s.id())) {
                    assertTrue(ok.contains(v), when + ": snapshot " + s.id() + " chunk " + c + " holds " + v + ", acceptable " + ok);
                }
            }
        }
        assertTrue(r.awaitReclaim(30_000));
        assertTrue(r.store().check().clean());
        r.close();
        return true;
    }

    static List<Integer> acceptable(List<Write> h, Snap s) {
        int base = 0;
        for (int i = 0; i < h.size(); i++) if (h.get(i).ack() < s.start()) base = i;
        List<Integer> ok = new ArrayList<>();
        ok.add(h.get(base).version());
        for (int i = base + 1; i < h.size(); i++) if (h.get(i).start() < s.end()) ok.add(h.get(i).version());
        return ok;
    }

    static byte[] read(BlockDevice d, int c) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(CB);
        d.read((long) c * CB, b);
        return b.array();
    }
}
