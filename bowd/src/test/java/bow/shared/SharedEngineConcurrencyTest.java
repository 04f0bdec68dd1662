package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.JitterDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Several origin writers, a writer of a writable snapshot, and a thread creating and deleting
 * snapshots, all at once over jittery devices; then every export is compared with a model of
 * the acknowledged writes. Each chunk has one writer, whose writes stamp the whole chunk with
 * (chunk, version), so a read tells which write it sees. A snapshot must see, per chunk, the
 * last write acknowledged before its create started or a write that started before its create
 * returned (a create drains I/O, so those are the only candidates), and nothing torn.
 */
class SharedEngineConcurrencyTest {
    static final int ROUNDS = Math.max(1, Integer.getInteger("bow.test.seeds", 4) / 60);
    static final int CS = 8, CB = CS * 512;
    static final int CHUNKS = 96;
    static final int ORIGIN_WRITERS = 3;
    static final long RUN_MILLIS = 1500;

    /** One write to a chunk: its version, when it started and when it was acknowledged (ticks of {@link #clock}). */
    record Write(int version, long start, long ack) {}

    final AtomicLong clock = new AtomicLong();

    static byte[] stamp(int chunk, int version, int len) {
        ByteBuffer b = ByteBuffer.allocate(len);
        while (b.remaining() >= 8) b.putInt(chunk).putInt(version);
        return b.array();
    }

    static int versionOf(byte[] chunk, int c, String what) {
        ByteBuffer b = ByteBuffer.wrap(chunk);
        int ch = b.getInt(0), v = b.getInt(4);
        assertEquals(c, ch, what + ": chunk " + c + " holds another chunk's data");
        for (int i = 0; i + 8 <= chunk.length; i += 8) {
            assertEquals(ch, b.getInt(i), what + ": chunk " + c + " torn at " + i);
            assertEquals(v, b.getInt(i + 4), what + ": chunk " + c + " torn at " + i);
        }
        return v;
    }

    record Snap(int id, long start, long end, boolean writable) {}

    @Test
    void concurrentWritersWithCreateAndDelete() throws Exception {
        for (int round = 0; round < ROUNDS; round++) runRound(round);
    }

    void runRound(int round) throws Exception {
        MemoryBlockDevice originMem = new MemoryBlockDevice(CHUNKS * CB);
        MemoryBlockDevice cowMem = new MemoryBlockDevice(4096 * CB);
        for (int c = 0; c < CHUNKS; c++) originMem.write((long) c * CB, ByteBuffer.wrap(stamp(c, 0, CB)));
        BlockDevice origin = new JitterDevice(originMem, 200), cow = new JitterDevice(cowMem, 200);
        SharedStore.Tuning small = new SharedStore.Tuning(6, Leaf.bytesFor(2, 2 * 16), 16, 32);
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), small);
        int snapW = e.createSnapshot("w", true);
        Snap wSnap = new Snap(snapW, 0, clock.incrementAndGet(), true);

        // per chunk, the origin's writes in order (one writer per chunk); snapshot w's last write per chunk
        List<List<Write>> history = new ArrayList<>();
        for (int c = 0; c < CHUNKS; c++) history.add(Collections.synchronizedList(new ArrayList<>(List.of(new Write(0, 0, 0)))));
        Map<Integer, Integer> snapWLast = new ConcurrentHashMap<>();
        List<Snap> live = Collections.synchronizedList(new ArrayList<>());
        AtomicBoolean stop = new AtomicBoolean();
        List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < ORIGIN_WRITERS; t++) {
            final int me = t;
            threads.add(new Thread(() -> {
                Random rnd = new Random(round * 100 + me);
                int[] version = new int[CHUNKS];
                try {
                    while (!stop.get()) {
                        int c = me + ORIGIN_WRITERS * rnd.nextInt(CHUNKS / ORIGIN_WRITERS);
                        // sometimes two chunks of this writer in one request
                        int v = ++version[c];
                        long start = clock.incrementAndGet();
                        e.exports().get("").write((long) c * CB, ByteBuffer.wrap(stamp(c, v, CB)));
                        history.get(c).add(new Write(v, start, clock.incrementAndGet()));
                    }
                } catch (Throwable x) { errors.add(x); }
            }, "origin-writer-" + t));
        }
        threads.add(new Thread(() -> {
            Random rnd = new Random(round * 100 + 50);
            int v = 1000;
            try {
                while (!stop.get()) {
                    int c = rnd.nextInt(CHUNKS);
                    v++;
                    // half-chunk writes too: the rest of the chunk must come from what the snapshot saw
                    if (rnd.nextBoolean()) {
                        e.exports().get("snapshot-" + snapW).write((long) c * CB, ByteBuffer.wrap(stamp(c, v, CB)));
                        snapWLast.put(c, v);
                    } else {
                        Integer prev = snapWLast.get(c);
                        if (prev == null) continue;      // a half write of an unwritten chunk would mix versions
                        e.exports().get("snapshot-" + snapW).write((long) c * CB, ByteBuffer.wrap(stamp(c, prev, CB / 2)));
                    }
                }
            } catch (Throwable x) { errors.add(x); }
        }, "snapshot-writer"));
        threads.add(new Thread(() -> {
            Random rnd = new Random(round * 100 + 60);
            try {
                while (!stop.get()) {
                    if (live.size() < 10 && (live.isEmpty() || rnd.nextInt(3) > 0)) {
                        long start = clock.incrementAndGet();
                        int id;
                        try {
                            id = e.createSnapshot(rnd.nextBoolean() ? null : "c" + clock.get(), false);
                        } catch (IllegalStateException limit) {
                            Thread.sleep(5);
                            continue;
                        }
                        live.add(new Snap(id, start, clock.incrementAndGet(), false));
                    } else {
                        Snap s = live.remove(rnd.nextInt(live.size()));
                        e.deleteSnapshot(Integer.toString(s.id()));
                    }
                    Thread.sleep(rnd.nextInt(20));
                }
            } catch (Throwable x) { errors.add(x); }
        }, "create-delete"));
        for (Thread t : threads) t.start();
        Thread.sleep(RUN_MILLIS);
        stop.set(true);
        for (Thread t : threads) t.join(30_000);
        for (Thread t : threads) assertFalse(t.isAlive(), t.getName() + " is stuck");
        if (!errors.isEmpty()) throw new AssertionError("worker failed", errors.get(0));

        verifyAll(e, history, snapWLast, wSnap, live, "round " + round);
        e.close();
        SharedEngine e2 = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), small);
        verifyAll(e2, history, snapWLast, wSnap, live, "round " + round + " after reopen");
        assertTrue(e2.awaitReclaim(30_000));
        assertTrue(e2.store().check().clean(), e2.store().check().problems().toString());
        e2.close();
    }

    void verifyAll(SharedEngine e, List<List<Write>> history, Map<Integer, Integer> snapWLast, Snap wSnap, List<Snap> live, String when) throws IOException {
        SharedTree.CheckResult r = e.store().check();
        assertTrue(r.clean(), when + ": " + r.problems());
        BlockDevice o = e.exports().get("");
        for (int c = 0; c < CHUNKS; c++) {
            List<Write> h = history.get(c);
            assertEquals(h.get(h.size() - 1).version(), versionOf(read(o, c), c, when + " origin"), when + ": origin chunk " + c);
        }
        List<Snap> all = new ArrayList<>(live);
        all.add(wSnap);
        for (Snap s : all) {
            BlockDevice d = e.exports().get("snapshot-" + s.id());
            assertNotNull(d, when + ": snapshot " + s.id() + " export");
            for (int c = 0; c < CHUNKS; c++) {
                int got = versionOf(read(d, c), c, when + " snapshot " + s.id());
                if (s.writable() && snapWLast.containsKey(c)) {
                    assertEquals((int) snapWLast.get(c), got, when + ": snapshot " + s.id() + " chunk " + c + " (its own last write)");
                    continue;
                }
                assertTrue(acceptable(history.get(c), s).contains(got),
                        when + ": snapshot " + s.id() + " chunk " + c + " shows version " + got + ", acceptable " + acceptable(history.get(c), s));
            }
        }
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
