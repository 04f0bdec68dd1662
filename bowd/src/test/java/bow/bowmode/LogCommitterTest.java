package bow.bowmode;

import bow.blockdev.testing.GateDevice;
import bow.blockdev.testing.GateDevice.Gate;
import bow.blockdev.testing.GateDevice.Match;
import bow.blockdev.testing.GateDevice.Op;
import bow.blockdev.testing.GateDevice.Phase;
import bow.blockdev.testing.PowerCutDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The log committer's ordering, one flush at a time: a flush counts only what was staged
 * before it started, and writers return only after a header counting them was flushed; and
 * its flushes are ranged: they make the backups and the log durable, not other writes.
 */
class LogCommitterTest {
    static final int BS = 4096;
    static final int BLOCKS = 2048;
    static final Duration T = Duration.ofSeconds(10);
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);

    /** Block 0 holds a fresh log (count 1: the block-0 backup at block 1). */
    static LogBlock freshLog() {
        LogBlock log = new LogBlock(new byte[BS]).initHeader(LogBlock.MAGIC, BS, 1, 0, 8);
        log.setEntry(0, new LogEntry(0, 8, BS, 0));
        return log;
    }

    static LogCommitter committer(bow.blockdev.BlockDevice dev, LogBlock log, long[] nextFree) {
        return new LogCommitter(dev, log, () -> new LogCommitter.Allocation(nextFree[0]++, () -> {}));
    }

    /** A disk with a fresh durable log, a gate above it, and a committer on the gate. */
    record Rig(PowerCutDevice disk, GateDevice dev, LogCommitter c) {}

    static Rig rig() throws java.io.IOException {
        PowerCutDevice disk = new PowerCutDevice(BLOCKS * BS);
        GateDevice dev = new GateDevice(disk);
        LogBlock log = freshLog();
        dev.write(0, ByteBuffer.wrap(log.bytes()));
        dev.flush();
        return new Rig(disk, dev, committer(dev, log, new long[] {300}));
    }

    static LogEntry entry(int i) { return new LogEntry(8L * (100 + i), 8L * (200 + i), BS, 0); }

    /** Waits until the committer has staged {@code n} tickets (in memory: staging writes nothing). */
    static void awaitTickets(LogCommitter c, long n, String what) throws InterruptedException {
        long deadline = System.nanoTime() + T.toNanos();
        while (c.stagedTickets() < n) {
            assertTrue(System.nanoTime() < deadline, what);
            Thread.sleep(1);
        }
    }

    static LogEntry liveEntry(PowerCutDevice disk, int i) {
        return new LogBlock(java.util.Arrays.copyOf(disk.liveImage(), BS)).entry(i);
    }

    static long countOn(byte[] image) { return new LogBlock(java.util.Arrays.copyOf(image, BS)).count(); }

    @Test
    void oneFlightAtATimeAWriterArrivingDuringAFlushIsStagedAtOnceAndRidesTheNextFlush() throws Exception {
        Rig rig = rig();
        PowerCutDevice disk = rig.disk();
        GateDevice dev = rig.dev();
        LogCommitter c = rig.c();

        Gate f1 = dev.arm(Op.FLUSH, Match.any());
        GateDevice.Request a = GateDevice.start("A", () -> c.commit(List.of(entry(1)), -1));
        assertTrue(f1.awaitArrived(T));
        Gate f2 = dev.arm(Op.FLUSH, Match.any());
        GateDevice.Request b = GateDevice.start("B", () -> c.commit(List.of(entry(2)), -1));
        awaitTickets(c, 2, "B stages its entry at once while A's flush runs");
        Thread.sleep(50);
        assertFalse(f2.hasArrived(), "no second flush while one is in flight");
        assertEquals(1, countOn(disk.liveImage()), "nothing counted yet");
        assertNotEquals(entry(2).destSector(), liveEntry(disk, 2).destSector(),
                "staging writes nothing: B's entry waits for the next flight's write of the block");

        f1.release();   // A eligible: the header counting A is written, and the next flush carries B's staging too
        assertTrue(f2.awaitArrived(T));
        assertEquals(2, countOn(disk.liveImage()), "the header counts A, not B (B was staged after F1 began)");
        assertEquals(entry(2).destSector(), liveEntry(disk, 2).destSector(), "F2's write of the block carries B's entry");
        assertFalse(a.isDone(), "A waits for the flush after its header");
        f2.release();
        a.join(T);
        b.join(T);   // F2 made B eligible; F3 (not gated) carried its header
        assertEquals(3, countOn(disk.durableImage()));
    }

    /**
     * A flush writes the log block as it was when the flush started. Held just before that
     * write, a writer stages its entry meanwhile (into the block in memory); the copy then
     * lands without it. The writer must still return only once a durable log holds its entry.
     */
    @Test
    void aFlushsStaleBlockCopyLandingAfterALaterStagingLosesNothing() throws Exception {
        Rig rig = rig();
        PowerCutDevice disk = rig.disk();
        GateDevice dev = rig.dev();
        LogCommitter c = rig.c();

        java.util.concurrent.atomic.AtomicInteger writesAt0 = new java.util.concurrent.atomic.AtomicInteger();
        // Staging writes nothing: the first write of block 0 is the flush's copy.
        Gate copy = dev.arm(Op.WRITE, Phase.BEFORE, (o, l) -> o == 0 && writesAt0.incrementAndGet() == 1, 1);
        GateDevice.Request a = GateDevice.start("A", () -> c.commit(List.of(entry(1)), -1));
        assertTrue(copy.awaitArrived(T), "A's flush is about to write its copy of the log block");
        GateDevice.Request b = GateDevice.start("B", () -> c.commit(List.of(entry(2)), -1));
        awaitTickets(c, 2, "B stages its entry while the copy is held");
        copy.release();   // the copy without B's entry lands
        a.join(T);
        b.join(T);
        LogBlock durable = new LogBlock(java.util.Arrays.copyOf(disk.durableImage(), BS));
        assertEquals(3, durable.count(), "A and B counted by a durable header");
        assertEquals(entry(1).destSector(), durable.entry(1).destSector());
        assertEquals(entry(2).destSector(), durable.entry(2).destSector(), "B's entry is in the durable log");
        assertEquals(entry(2).sourceSector(), durable.entry(2).sourceSector());
    }

    static byte[] filled(int b) {
        byte[] a = new byte[BS];
        java.util.Arrays.fill(a, (byte) b);
        return a;
    }

    static byte[] blockOf(byte[] image, long block) {
        return java.util.Arrays.copyOfRange(image, (int) (block * BS), (int) ((block + 1) * BS));
    }

    @Test
    void aCommitMakesItsBackupsTheNewSector0AndTheLogDurableButNotOtherWrites() throws Exception {
        PowerCutDevice disk = new PowerCutDevice(BLOCKS * BS);
        LogBlock log = freshLog();
        disk.write(0, ByteBuffer.wrap(log.bytes()));
        disk.flush();
        LogCommitter c = committer(disk, log, new long[] {300});

        disk.write(150L * BS, ByteBuffer.wrap(filled(0xd1)));   // a client's write elsewhere: nobody asked to flush it
        disk.write(200L * BS, ByteBuffer.wrap(filled(0xb1)));   // entry(0)'s backup
        c.commit(List.of(entry(0)), -1);
        byte[] img = disk.durableImage();
        assertEquals(2, countOn(img), "the header counting the entry is durable");
        assertArrayEquals(filled(0xb1), blockOf(img, 200), "the backup it names is durable");
        assertArrayEquals(new byte[BS], blockOf(img, 150), "the commit did not flush a write it does not protect");

        disk.write(400L * BS, ByteBuffer.wrap(filled(0x50)));   // the live block 0's new home
        disk.write(201L * BS, ByteBuffer.wrap(filled(0xb2)));
        c.commit(List.of(entry(1)), 400L * (BS / 512));
        img = disk.durableImage();
        LogBlock onDisk = new LogBlock(java.util.Arrays.copyOf(img, BS));
        assertEquals(3, onDisk.count());
        assertEquals(400L * (BS / 512), onDisk.sector0());
        assertArrayEquals(filled(0x50), blockOf(img, 400), "the block the new sector0 names is durable");
        assertArrayEquals(filled(0xb2), blockOf(img, 201));
        assertArrayEquals(new byte[BS], blockOf(img, 150));
        disk.crash(new Random(3));
        assertEquals(3, countOn(disk.durableImage()));
    }

    /**
     * Many writers, slow flushes, rollovers, and a power cut at a random operation: every
     * entry the durable header counts has its backup durable, and every writer that
     * returned is counted.
     */
    @Test
    void concurrentWritersWithSlowFlushesRolloversAndAPowerCut() throws Exception {
        int runs = Math.max(4, SEEDS / 10);
        for (int seed = 1; seed <= runs; seed++) {
            Random r = new Random(seed);
            PowerCutDevice disk = new PowerCutDevice(BLOCKS * BS);
            disk.setFlushLatency(300, new Random(seed * 7L));
            // No gate: the power-cut device's own ranged sync, which keeps unnamed writes volatile.
            bow.blockdev.BlockDevice dev = disk;
            LogBlock log = freshLog();
            dev.write(0, ByteBuffer.wrap(log.bytes()));
            dev.flush();
            long[] nextFree = {1200};
            LogCommitter c = committer(dev, log, nextFree);
            int threads = 2 + r.nextInt(6);
            int perThread = 10 + r.nextInt(60);
            boolean cut = r.nextInt(4) != 0;
            if (cut) disk.armCrashAfterOps(r.nextInt(threads * perThread * 3), new Random(seed * 11L));
            ConcurrentLinkedQueue<Integer> returned = new ConcurrentLinkedQueue<>();
            ConcurrentLinkedQueue<Throwable> unexpected = new ConcurrentLinkedQueue<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int tid = t;
                Thread th = new Thread(() -> {
                    for (int k = 0; k < perThread; k++) {
                        int id = tid * perThread + k;   // dest blocks 200..683 stay below the copies (1200..)
                        byte[] backup = new byte[BS];
                        ByteBuffer.wrap(backup).putInt(0, id).putInt(4, 0x5eed);
                        try {
                            dev.write((200L + id) * BS, ByteBuffer.wrap(backup));
                            int n = 1 + (id % 3 == 0 ? 1 : 0);   // some writes log two entries
                            List<LogEntry> es = new ArrayList<>();
                            for (int j = 0; j < n; j++) es.add(new LogEntry(8L * (1000 + id * 2 + j), 8L * (200 + id), BS, 0));
                            c.commit(es, -1);
                            returned.add(id);
                        } catch (Throwable e) {
                            if (!disk.isDead()) unexpected.add(e);
                            return;
                        }
                    }
                });
                ts.add(th);
                th.start();
            }
            for (Thread th : ts) th.join(60_000);
            assertTrue(unexpected.isEmpty(), "seed " + seed + ": " + unexpected);
            if (!disk.isDead()) disk.crash(new Random(seed));
            byte[] img = disk.durableImage();
            // Walk the durable chain: the current block, then the copies its entry 0 names.
            java.util.Set<Integer> counted = new java.util.HashSet<>();
            LogBlock cur = new LogBlock(java.util.Arrays.copyOf(img, BS));
            assertEquals(LogBlock.MAGIC, cur.magic(), "seed " + seed);
            while (true) {
                for (int i = 1; i < cur.count(); i++) {
                    LogEntry e = cur.entry(i);
                    int id = (int) (e.destSector() / 8 - 200);
                    ByteBuffer bk = ByteBuffer.wrap(img, (int) e.destByte(), BS);
                    assertEquals(id, bk.getInt((int) e.destByte()), "seed " + seed + ": counted entry " + i + " of sequence " + cur.sequence() + " has its backup durable");
                    assertEquals(0x5eed, bk.getInt((int) e.destByte() + 4), "seed " + seed);
                    counted.add(id);
                }
                if (cur.sequence() == 0) break;
                LogEntry copy = cur.entry(0);
                assertEquals(0, copy.sourceSector());
                cur = new LogBlock(java.util.Arrays.copyOfRange(img, (int) copy.destByte(), (int) copy.destByte() + BS));
                assertEquals(LogBlock.MAGIC, cur.magic(), "seed " + seed + ": the copy of a full block is durable");
                assertEquals(LogBlock.capacity(BS), cur.count(), "seed " + seed + ": a copied block is full");
            }
            for (int id : returned) assertTrue(counted.contains(id), "seed " + seed + ": writer " + id + " returned but is not in the durable log");
            if (!cut) assertEquals(threads * perThread, returned.size(), "seed " + seed);
        }
    }
}
