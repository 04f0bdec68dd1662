package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Single-threaded power cuts: a random workload (origin and snapshot writes each followed by a
 * flush, create, delete, rollback) with the COW cut at a random operation and the origin at the
 * same moment. Reopened from the durable images, the store must be clean and show, byte for byte,
 * the state before or after the operation that was cut (a cut write may land torn), and every
 * snapshot the operation did not touch exactly.
 */
class SharedEngineCrashTest {
    static final int CRASHES = Integer.getInteger("bow.test.crashes", 40);
    static final int CS = 8, CB = CS * 512;
    static final SharedStore.Tuning SMALL = new SharedStore.Tuning(4, Leaf.bytesFor(2, 16), 8, 16);

    record State(byte[] origin, TreeMap<Integer, byte[]> snaps, TreeMap<Integer, Boolean> writable) {
        State copy() {
            TreeMap<Integer, byte[]> s = new TreeMap<>();
            snaps.forEach((k, v) -> s.put(k, v.clone()));
            return new State(origin.clone(), s, new TreeMap<>(writable));
        }
    }

    @Test
    void powerCutAtRandomOperations() throws Exception {
        int cuts = 0;
        for (int seed = 0; seed < CRASHES; seed++) cuts += runSeed(seed) ? 1 : 0;
        assertTrue(cuts > CRASHES / 2, "most runs should end in a cut, " + cuts + " of " + CRASHES + " did");
    }

    boolean runSeed(int seed) throws Exception {
        Random rnd = new Random(seed * 31L + 5);
        int size = (32 + rnd.nextInt(32)) * CB;
        byte[] init = new byte[size];
        rnd.nextBytes(init);
        PowerCutDevice origin = new PowerCutDevice(init);
        PowerCutDevice cow = new PowerCutDevice(1024 * CB);
        // warm-up without cuts: a store with a few snapshots
        State model = new State(init.clone(), new TreeMap<>(), new TreeMap<>());
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), SMALL);
        for (int i = 0; i < 3; i++) step(e, model, rnd, size);
        cow.armCrashAfterOps(1 + rnd.nextInt(200), new Random(seed));
        State before = model.copy();
        boolean cut = false;
        for (int op = 0; op < 40; op++) {
            before = model.copy();
            try {
                step(e, model, rnd, size);
            } catch (IOException | IllegalStateException ex) {
                if (!cow.isDead()) throw ex;
                cut = true;
                break;
            }
            if (cow.isDead()) { cut = true; break; }
        }
        if (!cut) { cow.armCrashAfterOps(Long.MAX_VALUE, null); e.close(); return false; }
        origin.crash(new Random(seed + 1));
        try { e.close(); } catch (IOException expected) { /* the devices are dead */ }
        PowerCutDevice o2 = new PowerCutDevice(origin.durableImage());
        PowerCutDevice c2 = new PowerCutDevice(cow.durableImage());
        SharedEngine r = SharedEngine.open(o2, c2, new SharedEngine.Options(CS), SMALL);
        String when = "seed " + seed + " after the cut";
        if (r.store() != null) {
            SharedTree.CheckResult ck = r.store().check();
            assertTrue(ck.clean(), when + ": " + ck.problems());
        }
        matchEither(readAll(r.exports().get("")), before.origin(), model.origin(), when + ": origin");
        TreeMap<Integer, byte[]> got = new TreeMap<>();
        for (var ex : r.exports().entrySet()) {
            if (ex.getKey().matches("snapshot-\\d+")) got.put(Integer.parseInt(ex.getKey().substring(9)), readAll(ex.getValue()));
        }
        assertTrue(got.keySet().equals(before.snaps().keySet()) || got.keySet().equals(model.snaps().keySet()),
                when + ": snapshots " + got.keySet() + ", expected " + before.snaps().keySet() + " or " + model.snaps().keySet());
        for (var g : got.entrySet()) {
            byte[] b = before.snaps().get(g.getKey()), a = model.snaps().get(g.getKey());
            matchEither(g.getValue(), b != null ? b : a, a != null ? a : b, when + ": snapshot " + g.getKey());
        }
        assertTrue(r.awaitReclaim(30_000));
        if (r.store() != null) assertTrue(r.store().check().clean(), when + ": after reclaim " + r.store().check().problems());
        r.close();
        return true;
    }

    static void matchEither(byte[] got, byte[] before, byte[] after, String what) {
        for (int i = 0; i < got.length; i++) {
            if (got[i] != before[i] && got[i] != after[i]) fail(what + ": byte " + i + " (chunk " + i / CB + ") is neither the old nor the new data");
        }
    }

    /** One operation, made durable before it returns (writes are followed by a flush). The model changes first: a cut operation may have happened or not. */
    static void step(SharedEngine e, State m, Random rnd, int size) throws IOException {
        int k = rnd.nextInt(100);
        if (m.snaps().isEmpty() && k >= 45) k = 70;   // a create
        if (k < 45) {
            int off = rnd.nextInt(size), len = 1 + rnd.nextInt(Math.min(size - off, 3 * CB));
            byte[] d = new byte[len];
            rnd.nextBytes(d);
            System.arraycopy(d, 0, m.origin(), off, len);
            BlockDevice o = e.exports().get("");
            o.write(off, ByteBuffer.wrap(d));
            o.flush();
        } else if (k < 65) {
            List<Integer> ws = new ArrayList<>();
            m.writable().forEach((id, w) -> { if (w) ws.add(id); });
            if (ws.isEmpty()) return;
            int id = ws.get(rnd.nextInt(ws.size()));
            int off = rnd.nextInt(size), len = 1 + rnd.nextInt(Math.min(size - off, 2 * CB));
            byte[] d = new byte[len];
            rnd.nextBytes(d);
            System.arraycopy(d, 0, m.snaps().get(id), off, len);
            BlockDevice s = e.exports().get("snapshot-" + id);
            s.write(off, ByteBuffer.wrap(d));
            s.flush();
        } else if (k < 80) {
            if (m.snaps().size() >= 6) return;
            boolean w = rnd.nextBoolean();
            SharedStore st = e.store();
            int id = 0;
            if (st != null) {
                try { e.awaitReclaim(10_000); } catch (InterruptedException x) { throw new IOException(x); }
                long used = st.read(() -> st.tree().snapmask() | st.tree().deleting());
                id = Long.numberOfTrailingZeros(~used);
            }
            m.snaps().put(id, m.origin().clone());
            m.writable().put(id, w);
            assertEquals(id, e.createSnapshot(null, w), "the lowest free ID");
        } else if (k < 92) {
            if (m.snaps().isEmpty()) return;
            List<Integer> ids = new ArrayList<>(m.snaps().keySet());
            int id = ids.get(rnd.nextInt(ids.size()));
            m.snaps().remove(id);
            m.writable().remove(id);
            e.deleteSnapshot(Integer.toString(id));
        } else {
            if (m.snaps().isEmpty()) return;
            List<Integer> ids = new ArrayList<>(m.snaps().keySet());
            int id = ids.get(rnd.nextInt(ids.size()));
            System.arraycopy(m.snaps().get(id), 0, m.origin(), 0, size);
            e.rollbackTo(Integer.toString(id));
            e.awaitRollback();
        }
    }

    static byte[] readAll(BlockDevice d) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) d.size());
        d.read(0, b);
        return b.array();
    }
}
