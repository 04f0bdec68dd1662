package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Power cuts that hit ORIGIN and COW at the same moment, during origin writes, merges and checkpoint start. */
class PersistentCrashTest {

    /** Origin and COW on one power supply: after the armed number of mutating ops on either, both crash. */
    static final class Machine {
        PowerCutDevice origin, cow;
        long opsLeft = Long.MAX_VALUE;
        Random crashRandom;

        Machine(byte[] originImg, byte[] cowImg) {
            origin = new PowerCutDevice(originImg);
            cow = new PowerCutDevice(cowImg);
        }

        void arm(long ops, Random r) { opsLeft = ops; crashRandom = r; }

        void disarm() { opsLeft = Long.MAX_VALUE; }

        /** Reboot: both devices come back with their durable images. */
        void reboot() {
            origin = new PowerCutDevice(origin.durableImage());
            cow = new PowerCutDevice(cow.durableImage());
            disarm();
        }

        synchronized void tick() throws DeviceException {
            if (opsLeft != Long.MAX_VALUE && opsLeft-- <= 0) {
                origin.crash(crashRandom);
                cow.crash(crashRandom);
                throw new DeviceException(Errno.EIO, "simulated power cut (both devices)");
            }
        }

        BlockDevice originDev() { return new Plug(this, true); }
        BlockDevice cowDev() { return new Plug(this, false); }
    }

    /** Routes to the machine's current device, ticking its shared crash counter on every mutating op. */
    record Plug(Machine m, boolean isOrigin) implements BlockDevice {
        PowerCutDevice d() { return isOrigin ? m.origin : m.cow; }
        @Override public long size() { return d().size(); }
        @Override public void read(long o, ByteBuffer b) throws IOException { d().read(o, b); }
        @Override public void write(long o, ByteBuffer b) throws IOException { m.tick(); d().write(o, b); }
        @Override public void discard(long o, long l) throws IOException { m.tick(); d().discard(o, l); }
        @Override public void flush() throws IOException { m.tick(); d().flush(); }
    }

    static byte[] random(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    static byte[] readAll(BlockDevice d) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) d.size());
        d.read(0, b);
        return b.array();
    }

    static void run(String what, java.util.function.LongConsumer body) {
        int n = TestProps.crashes();
        long base = new Random().nextLong();
        for (int i = 0; i < n; i++) {
            long seed = base + i * 0x9E3779B97F4A7C15L;
            try {
                body.accept(seed);
            } catch (Throwable t) {
                throw new AssertionError(what + ": seed " + seed + " failed: " + t, t);
            }
        }
    }

    static void sneaky(ThrowingRunnable r) {
        try {
            r.run();
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    interface ThrowingRunnable { void run() throws Exception; }

    static final int SIZE = 192 * 1024 + 3 * 512; // not a whole number of chunks

    @Test
    void crashDuringOriginWritesKeepsTheSnapshot() {
        run("origin writes", seed -> sneaky(() -> {
            Random r = new Random(seed);
            int cs = r.nextBoolean() ? 1 : 8;
            byte[] init = random(r, SIZE);
            int chunks = (SIZE + cs * 512 - 1) / (cs * 512);
            Machine m = new Machine(init, new byte[(int) PersistentFormat.cowBytesFor(chunks, cs)]);
            PersistentEngine e = PersistentEngine.open(m.originDev(), m.cowDev(), new PersistentEngine.Options(cs, false, false));
            e.startCheckpoint();
            // two rounds: the second one writes on top of metadata reloaded after the first crash
            for (int round = 0; round < 2; round++) {
                m.arm(r.nextInt(250), r);
                byte[] model = m.origin.liveImage(); // what the origin reads as
                byte[] durable = model.clone();      // state at the last completed flush
                List<int[]> sinceFlush = new ArrayList<>();
                try {
                    for (int k = 0; k < 80; k++) {
                        if (r.nextInt(4) == 0) {
                            e.exports().get("").flush();
                            durable = model.clone();
                            sinceFlush.clear();
                            continue;
                        }
                        int off = r.nextInt(4) == 0 ? r.nextInt(SIZE) : 512 * r.nextInt(SIZE / 512);
                        int len = Math.min(SIZE - off, r.nextBoolean() ? 1 + r.nextInt(4096) : 512 * (1 + r.nextInt(120)));
                        byte[] d = random(r, len);
                        sinceFlush.add(new int[] {off, len});
                        e.exports().get("").write(off, ByteBuffer.wrap(d));
                        System.arraycopy(d, 0, model, off, len);
                    }
                    e.exports().get("").flush();
                    sinceFlush.clear();
                    durable = model.clone();
                } catch (IOException crashed) {
                    assertTrue(m.origin.isDead() && m.cow.isDead(), "only the power cut may fail a write: " + crashed);
                }
                m.reboot();
                // flushed writes survived (bytes not touched since the last flush)
                byte[] originNow = m.origin.durableImage();
                boolean[] touched = new boolean[SIZE];
                for (int[] w : sinceFlush) Arrays.fill(touched, w[0], w[0] + w[1], true);
                for (int i = 0; i < SIZE; i++) {
                    if (!touched[i] && originNow[i] != durable[i]) fail("round " + round + ": flushed origin byte " + i + " lost");
                }
                e = PersistentEngine.open(m.originDev(), m.cowDev(), PersistentEngine.Options.defaults());
                assertEquals(PersistentEngine.State.CHECKPOINT, e.state());
                assertArrayEquals(init, readAll(e.exports().get("snapshot")), "round " + round + ": snapshot is the starting image");
            }
            e.rollback();
            assertArrayEquals(init, m.origin.liveImage(), "merge restores the starting image");
        }));
    }

    @Test
    void crashDuringMergeResumes() {
        run("merge", seed -> sneaky(() -> {
            Random r = new Random(seed);
            int cs = r.nextBoolean() ? 1 : 4;
            boolean writable = r.nextBoolean();
            byte[] init = random(r, SIZE);
            int chunks = (SIZE + cs * 512 - 1) / (cs * 512);
            Machine m = new Machine(init, new byte[(int) PersistentFormat.cowBytesFor(chunks, cs)]);
            PersistentEngine e = PersistentEngine.open(m.originDev(), m.cowDev(), new PersistentEngine.Options(cs, false, writable));
            e.startCheckpoint();
            byte[] snap = init.clone();
            for (int k = 0; k < 25; k++) {
                int off = 512 * r.nextInt(SIZE / 512);
                int len = Math.min(SIZE - off, 512 * (1 + r.nextInt(100)));
                byte[] d = random(r, len);
                if (writable && r.nextInt(3) == 0) {
                    e.exports().get("snapshot").write(off, ByteBuffer.wrap(d));
                    System.arraycopy(d, 0, snap, off, len);
                } else {
                    e.exports().get("").write(off, ByteBuffer.wrap(d));
                }
            }
            e.exports().get("").flush();
            boolean online = r.nextBoolean();
            for (int attempt = 0; ; attempt++) {
                assertTrue(attempt < 40, "merge never finished");
                if (attempt < 8) m.arm(r.nextInt(60), r);
                try {
                    if (online) {
                        PersistentEngine eng = PersistentEngine.open(m.originDev(), m.cowDev(), PersistentEngine.Options.defaults());
                        if (eng.state() == PersistentEngine.State.NO_SNAPSHOT) break; // finished just before the cut
                        assertNotEquals(PersistentEngine.State.INVALID, eng.state());
                        if (attempt > 0 && eng.state() == PersistentEngine.State.MERGING) {
                            // the interrupted merge shows the merged view already
                            assertArrayEquals(snap, readAll(eng.exports().get("")));
                        }
                        eng.rollback();
                    } else {
                        PersistentMerge.run(m.originDev(), m.cowDev(), null);
                    }
                    break;
                } catch (IOException crashed) {
                    assertTrue(m.origin.isDead(), "only the power cut may fail the merge: " + crashed);
                    m.reboot();
                }
            }
            m.disarm();
            assertArrayEquals(snap, m.origin.liveImage(), "origin equals the snapshot");
            m.reboot();
            assertArrayEquals(snap, m.origin.durableImage(), "and durably so");
            assertNull(PersistentStore.load(m.cowDev(), 0, null), "no snapshot left on the COW");
        }));
    }

    @Test
    void crashDuringCheckpointStartNeverShowsAStaleSnapshot() {
        run("checkpoint start", seed -> sneaky(() -> {
            Random r = new Random(seed);
            byte[] init = random(r, SIZE);
            Machine m = new Machine(init, new byte[(int) PersistentFormat.cowBytesFor(SIZE / 512, 1)]);
            // an old snapshot with exceptions and another chunk size, then committed... or left in place
            PersistentEngine old = PersistentEngine.open(m.originDev(), m.cowDev(), new PersistentEngine.Options(1, false, false));
            old.startCheckpoint();
            old.exports().get("").write(0, ByteBuffer.wrap(new byte[64 * 1024]));
            old.exports().get("").flush();
            old.commit();
            byte[] base = m.origin.durableImage();
            PersistentEngine e = PersistentEngine.open(m.originDev(), m.cowDev(), new PersistentEngine.Options(2, false, false));
            m.arm(r.nextInt(7), r);
            try {
                e.startCheckpoint();
            } catch (IOException crashed) {
                assertTrue(m.cow.isDead());
            }
            m.reboot();
            PersistentEngine after = PersistentEngine.open(m.originDev(), m.cowDev(), PersistentEngine.Options.defaults());
            if (after.state() == PersistentEngine.State.CHECKPOINT) {
                assertEquals(0, after.store().exceptionCount());
                assertArrayEquals(base, readAll(after.exports().get("snapshot")));
            } else {
                assertEquals(PersistentEngine.State.NO_SNAPSHOT, after.state());
            }
        }));
    }
}
