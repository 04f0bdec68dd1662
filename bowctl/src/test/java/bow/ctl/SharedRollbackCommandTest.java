package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.blockdev.FileBlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.PowerCutDevice;
import bow.shared.SharedCheck;
import bow.shared.SharedEngine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code bowctl rollback --mode shared}: the offline rollback of the origin to a snapshot, on
 * stores the real engine wrote; also interrupted by a power cut of origin and COW together at a
 * random operation, then run again.
 */
class SharedRollbackCommandTest {
    /** Each cut costs two rollbacks and three verifications (~0.25 s here): a quarter of bow.test.crashes keeps the class near 30 s at the pom's 500. */
    static final int CRASHES = Math.max(1, Integer.getInteger("bow.test.crashes", 80) / 4);
    static final int ORIGIN_BYTES = 1 << 20;
    static final int COW_BYTES = 2 << 20;
    @TempDir Path dir;

    static Ext4EndToEndTest.Run bowctl(String... args) { return Ext4EndToEndTest.bowctl(args); }

    static byte[] readAll(BlockDevice d) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) d.size());
        d.read(0, b);
        return b.array();
    }

    /** What the snapshots hold after {@link #populate}. */
    record Contents(byte[] before, byte[] mid, byte[] originNow) {}

    /**
     * Snapshot "before" of a random origin, origin writes, writable snapshot "mid", more origin
     * writes and writes to "mid" itself; everything flushed and the engine closed.
     */
    static Contents populate(BlockDevice origin, BlockDevice cow, long seed) throws IOException {
        Random r = new Random(seed);
        byte[] start = new byte[ORIGIN_BYTES];
        r.nextBytes(start);
        origin.write(0, ByteBuffer.wrap(start));
        try (SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(8))) {
            e.createSnapshot("before", false);
            BlockDevice o = e.exports().get("");
            byte[] before = readAll(e.exports().get("snapshot-before"));
            assertArrayEquals(start, before);
            scribble(o, r, 40);
            e.createSnapshot("mid", true);
            scribble(o, r, 40);
            scribble(e.exports().get("snapshot-mid"), r, 15);
            o.flush();
            e.exports().get("snapshot-mid").flush();
            byte[] mid = readAll(e.exports().get("snapshot-mid"));
            assertArrayEquals(before, readAll(e.exports().get("snapshot-before")));
            Contents c = new Contents(before, mid, readAll(o));
            assertFalse(Arrays.equals(c.before(), c.originNow()));
            return c;
        }
    }

    static void scribble(BlockDevice d, Random r, int writes) throws IOException {
        for (int i = 0; i < writes; i++) {
            byte[] b = new byte[512 * (1 + r.nextInt(24))];
            r.nextBytes(b);
            long off = 512L * r.nextInt((int) ((d.size() - b.length) / 512));
            d.write(off, ByteBuffer.wrap(b));
        }
    }

    /** After the rollback: the origin is "before", both snapshots read as they did, the store checks clean. */
    static void verifyRolledBack(BlockDevice origin, BlockDevice cow, Contents c, String when) throws IOException {
        assertArrayEquals(c.before(), readAll(origin), when + ": the origin is the snapshot");
        SharedCheck.Result r = SharedCheck.run(cow);
        assertTrue(r.clean(), when + ": " + r.problems());
        try (SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(0))) {
            assertArrayEquals(c.before(), readAll(e.exports().get("snapshot-before")), when + ": snapshot before");
            assertArrayEquals(c.mid(), readAll(e.exports().get("snapshot-mid")), when + ": snapshot mid");
        }
    }

    @Test
    void rollsTheOriginBackToASnapshotAndKeepsEverySnapshot() throws Exception {
        Path origin = dir.resolve("origin.img"), cow = dir.resolve("cow.img");
        FileBlockDevice.createSparse(origin, ORIGIN_BYTES);
        FileBlockDevice.createSparse(cow, COW_BYTES);
        Contents c;
        try (FileBlockDevice o = FileBlockDevice.open(origin, false); FileBlockDevice w = FileBlockDevice.open(cow, false)) {
            c = populate(o, w, 1);
        }
        Ext4EndToEndTest.Run check = bowctl("shared", "check", "--cow", cow.toString());
        assertEquals(ExitCodes.OK, check.code(), "the engine's store checks clean: " + check);

        Ext4EndToEndTest.Run r = bowctl("rollback", "--mode", "shared", "--device", origin.toString(), "--cow", cow.toString(), "--snapshot", "before");
        assertEquals(ExitCodes.OK, r.code(), r.toString());
        assertTrue(r.out().contains("to snapshot 0 (before)") && r.out().contains("chunks"), r.out());
        try (FileBlockDevice o = FileBlockDevice.open(origin, false); FileBlockDevice w = FileBlockDevice.open(cow, false)) {
            verifyRolledBack(o, w, c, "after the rollback");
        }
        Ext4EndToEndTest.Run again = bowctl("rollback", "--mode", "shared", "--device", origin.toString(), "--cow", cow.toString(), "--snapshot", "0");
        assertEquals(ExitCodes.OK, again.code(), "a second run changes nothing: " + again);
        try (FileBlockDevice o = FileBlockDevice.open(origin, false); FileBlockDevice w = FileBlockDevice.open(cow, false)) {
            verifyRolledBack(o, w, c, "after a second run");
        }
        assertEquals(ExitCodes.OK, bowctl("shared", "check", "--cow", cow.toString()).code());

        // to the writable snapshot, by ID
        Ext4EndToEndTest.Run mid = bowctl("rollback", "--mode", "shared", "--device", origin.toString(), "--cow", cow.toString(), "--snapshot", "1");
        assertEquals(ExitCodes.OK, mid.code(), mid.toString());
        assertArrayEquals(c.mid(), Files.readAllBytes(origin));
    }

    @Test
    void refusalsChangeNothing() throws Exception {
        Path origin = dir.resolve("origin.img"), cow = dir.resolve("cow.img");
        FileBlockDevice.createSparse(origin, ORIGIN_BYTES);
        FileBlockDevice.createSparse(cow, COW_BYTES);
        try (FileBlockDevice o = FileBlockDevice.open(origin, false); FileBlockDevice w = FileBlockDevice.open(cow, false)) {
            populate(o, w, 2);
        }
        byte[] o0 = Files.readAllBytes(origin), c0 = Files.readAllBytes(cow);
        String d = origin.toString(), w = cow.toString();

        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--mode", "shared", "--device", d, "--cow", w).code(), "no --snapshot");
        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--mode", "shared", "--device", d, "--snapshot", "0").code(), "no --cow");
        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--device", d, "--snapshot", "0").code(), "--snapshot in bow mode");
        Ext4EndToEndTest.Run none = bowctl("rollback", "--mode", "shared", "--device", d, "--cow", w, "--snapshot", "nosuch");
        assertEquals(ExitCodes.NO_CHECKPOINT, none.code(), none.toString());
        assertTrue(none.err().contains("no snapshot nosuch") && none.err().contains("live: 0,1"), none.err());
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--mode", "shared", "--device", d, "--cow", w, "--snapshot", "7").code());

        Path other = dir.resolve("other.img");
        FileBlockDevice.createSparse(other, ORIGIN_BYTES * 2);
        Ext4EndToEndTest.Run wrong = bowctl("rollback", "--mode", "shared", "--device", other.toString(), "--cow", w, "--snapshot", "0");
        assertEquals(ExitCodes.WRONG_ORIGIN, wrong.code(), wrong.toString());

        Path blank = dir.resolve("blank.img");
        FileBlockDevice.createSparse(blank, COW_BYTES);
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--mode", "shared", "--device", d, "--cow", blank.toString(), "--snapshot", "0").code());
        assertArrayEquals(o0, Files.readAllBytes(origin));
        assertArrayEquals(c0, Files.readAllBytes(cow));

        // a corrupt COW: the origin is left alone
        SharedCheck.Result clean;
        try (FileBlockDevice c = FileBlockDevice.open(cow, true)) { clean = SharedCheck.run(c); }
        long leaked = clean.header().nrChunks() - 1;
        byte[] bad = c0.clone();
        long bitmap = clean.header().layout().bitmapChunk(clean.header().slot(), 0);
        bad[(int) (bitmap * clean.header().chunkBytes() + leaked / 8)] |= (byte) (1 << (leaked % 8));
        Files.write(cow, bad);
        Ext4EndToEndTest.Run corrupt = bowctl("rollback", "--mode", "shared", "--device", d, "--cow", w, "--snapshot", "0");
        assertEquals(ExitCodes.LOG_INVALID, corrupt.code(), corrupt.toString());
        assertTrue(corrupt.err().contains("failed its check") && corrupt.err().contains("chunk " + leaked), corrupt.err());
        assertArrayEquals(o0, Files.readAllBytes(origin));
    }

    /** Power fails for origin and COW together after the op counter runs out. */
    static final class Cut {
        final PowerCutDevice origin, cow;
        final Random random;
        long left;
        long ops;
        Cut(byte[] o, byte[] c, long left, Random random) {
            this.origin = new PowerCutDevice(o);
            this.cow = new PowerCutDevice(c);
            this.left = left;
            this.random = random;
        }
        synchronized void tick() {
            ops++;
            if (left-- == 0) {
                origin.crash(random);
                cow.crash(random);
            }
        }
        BlockDevice wrap(PowerCutDevice d) {
            return new BlockDevice() {
                @Override public long size() { return d.size(); }
                @Override public void read(long offset, ByteBuffer dst) throws IOException { d.read(offset, dst); }
                @Override public void write(long offset, ByteBuffer src) throws IOException { tick(); d.write(offset, src); }
                @Override public void discard(long offset, long length) throws IOException { tick(); d.discard(offset, length); }
                @Override public void flush() throws IOException { tick(); d.flush(); }
            };
        }
    }

    static int run(BlockDevice origin, BlockDevice cow) throws IOException {
        StringWriter out = new StringWriter(), err = new StringWriter();
        PrintWriter e = new PrintWriter(err);
        return RollbackCommand.rollbackShared(origin, cow, "origin", "cow", "before", false, new PrintWriter(out), e, new ProgressLine(e, false));
    }

    @Test
    void aRollbackCutByAPowerFailureFinishesWhenRunAgain() throws Exception {
        MemoryBlockDevice o = new MemoryBlockDevice(ORIGIN_BYTES), c = new MemoryBlockDevice(COW_BYTES);
        Contents contents = populate(o, c, 3);
        byte[] origin0 = o.snapshot(), cow0 = c.snapshot();

        Cut measure = new Cut(origin0, cow0, Long.MAX_VALUE, new Random(0));
        assertEquals(ExitCodes.OK, run(measure.wrap(measure.origin), measure.wrap(measure.cow)));
        long total = measure.ops;
        assertTrue(total > 20, "the rollback writes and flushes (" + total + " ops)");
        verifyRolledBack(new MemoryBlockDevice(measure.origin.durableImage()), new MemoryBlockDevice(measure.cow.durableImage()), contents, "uncut");

        Random r = new Random(4);
        int failed = 0;
        for (int i = 0; i < CRASHES; i++) {
            // every op when there are cuts enough, else one random op in each of CRASHES equal stretches
            long at = CRASHES >= total ? i % total : i * total / CRASHES + r.nextLong(Math.max(1, total / CRASHES));
            Cut cut = new Cut(origin0, cow0, at, new Random(i));
            int code;
            try {
                code = run(cut.wrap(cut.origin), cut.wrap(cut.cow));
            } catch (IOException e) {
                code = -1;
            }
            if (code != ExitCodes.OK) failed++;
            // a fresh boot sees the durable images
            MemoryBlockDevice o2 = new MemoryBlockDevice(cut.origin.durableImage()), c2 = new MemoryBlockDevice(cut.cow.durableImage());
            String when = "power cut at op " + at + " of " + total;
            SharedCheck.Result mid = SharedCheck.run(c2);
            assertTrue(mid.clean(), when + ": the COW after the cut checks clean: " + mid.problems());
            assertEquals(ExitCodes.OK, run(o2, c2), when + ": the second run");
            verifyRolledBack(o2, c2, contents, when);
        }
        assertTrue(failed > 0, "some cuts interrupted the rollback");
        System.out.println("shared rollback power cuts: " + CRASHES + " cuts over " + total + " ops, " + failed + " interrupted the rollback");
    }
}
