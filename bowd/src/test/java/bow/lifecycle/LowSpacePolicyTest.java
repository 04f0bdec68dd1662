package bow.lifecycle;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.bowmode.BowEngine;
import bow.engine.ModeEngine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

/** The policy on a real bow engine in memory: it acts exactly when free space drops below the threshold. */
class LowSpacePolicyTest {
    static final int BS = 4096;
    @TempDir Path dir;

    /** 256 blocks of data; blocks 128..191 trimmed (free) before the checkpoint. */
    private static BowEngine engine() throws Exception {
        byte[] img = new byte[256 * BS];
        for (int i = 0; i < img.length; i++) img[i] = (byte) (i * 31 + i / BS);
        BowEngine e = BowEngine.open(new MemoryBlockDevice(img), "mem", BS);
        e.exports().get("").discard(128L * BS, 64L * BS);
        return e;
    }

    private static void overwrite(BlockDevice dev, int block) throws Exception {
        byte[] b = new byte[BS];
        Arrays.fill(b, (byte) 0x5a);
        dev.write((long) block * BS, ByteBuffer.wrap(b));
    }

    /** Writes data blocks one by one, polling after each; returns the write after which the policy acted. */
    private static int driveUntilAction(ModeEngine guarded, LowSpacePolicy p, long threshold) throws Exception {
        BlockDevice dev = guarded.exports().get("");
        for (int k = 1; k <= 20; k++) {
            overwrite(dev, k);
            long free = guarded.status().freeBytes();
            boolean acted = p.check();
            assertEquals(free < threshold, acted, "write " + k + ": " + free + " bytes free, threshold " + threshold);
            if (acted) return k;
        }
        return fail("never acted");
    }

    @Test
    void aLowSpaceCommitThatFailsLeavesTheRecordSayingCommitRequested() throws Exception {
        byte[] img = new byte[256 * BS];
        for (int i = 0; i < img.length; i++) img[i] = (byte) (i * 31 + i / BS);
        bow.blockdev.testing.PowerCutDevice disk = new bow.blockdev.testing.PowerCutDevice(img);
        BowEngine e = BowEngine.open(disk, "mem", BS);
        e.exports().get("").discard(128L * BS, 64L * BS);
        Path rec = dir.resolve("checkpoint.rec");
        e.startCheckpoint();
        CheckpointRecord.start("bow", "mem", null, 3, "test").write(rec);
        overwrite(e.exports().get(""), 3);
        e.flush();
        LowSpacePolicy p = new LowSpacePolicy(e, Long.MAX_VALUE, LowSpacePolicy.Action.COMMIT, rec, "mem");
        disk.armCrashAfterOps(1, new java.util.Random(1));   // power fails in the middle of the commit
        assertFalse(p.check(), "the commit failed");
        CheckpointRecord r = CheckpointRecord.read(rec).orElseThrow();
        assertEquals(CheckpointRecord.State.COMMIT_REQUESTED, r.state(), "the next boot must finish the commit");
        assertTrue(r.stateReason().startsWith("low space: commit at "), r.stateReason());
        assertFalse(r.needsRollback());
        p.close();
    }

    @Test
    void commitAtTheThreshold() throws Exception {
        BowEngine e = engine();
        Path rec = dir.resolve("checkpoint.rec");
        LowSpacePolicy p = new LowSpacePolicy(e, 0, LowSpacePolicy.Action.COMMIT, rec, "mem");
        ModeEngine g = p.guard();
        assertFalse(p.check(), "no checkpoint yet: nothing to do whatever the space");
        g.startCheckpoint();
        CheckpointRecord.start("bow", "mem", null, 3, "test").write(rec);
        long threshold = g.status().freeBytes() - 3L * BS;   // three backups reach it, the fourth goes below
        p = new LowSpacePolicy(e, threshold, LowSpacePolicy.Action.COMMIT, rec, "mem");
        g = p.guard();
        assertEquals(4, driveUntilAction(g, p, threshold));
        assertEquals("2 COMMITTED", e.status().state());
        assertTrue(CheckpointRecord.read(rec).isEmpty(), "the record of a committed checkpoint is removed");
        assertTrue(g.status().details().get("low_space_taken").startsWith("commit at "), g.status().details().toString());
        overwrite(g.exports().get(""), 30);   // still writable, pass-through now
        assertFalse(p.check(), "acts once");
        g.close();
    }

    @Test
    void abortFencesWritesAndRequestsRollback() throws Exception {
        BowEngine e = engine();
        Path rec = dir.resolve("checkpoint.rec");
        e.startCheckpoint();
        CheckpointRecord.start("bow", "mem", null, 3, "test").write(rec);
        long threshold = e.status().freeBytes() - 3L * BS;
        LowSpacePolicy p = new LowSpacePolicy(e, threshold, LowSpacePolicy.Action.ABORT, rec, "mem");
        ModeEngine g = p.guard();
        assertEquals(4, driveUntilAction(g, p, threshold));
        assertEquals("1 CHECKPOINT", e.status().state(), "the checkpoint is kept for the rollback");
        BlockDevice dev = g.exports().get("");
        DeviceException w = assertThrows(DeviceException.class, () -> overwrite(dev, 10));
        assertEquals(Errno.EIO, w.errno());
        assertThrows(DeviceException.class, () -> dev.discard(0, BS));
        assertThrows(DeviceException.class, () -> dev.writeZeroes(0, BS));
        dev.read(0, ByteBuffer.allocate(BS));
        dev.flush();
        assertThrows(IllegalStateException.class, g::commit);
        CheckpointRecord r = CheckpointRecord.read(rec).orElseThrow();
        assertEquals(CheckpointRecord.State.ROLLBACK_REQUESTED, r.state());
        assertTrue(r.lowSpaceAction().startsWith("abort at "), r.lowSpaceAction());
        assertTrue(r.needsRollback());
        assertTrue(g.status().details().get("writes").startsWith("refused"));
        g.close();
    }

    @Test
    void persistentModeAbortsOnCowSpace() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(new byte[4 << 20]);
        MemoryBlockDevice cow = new MemoryBlockDevice(new byte[1 << 20]);
        bow.snapshot.PersistentEngine e = bow.snapshot.PersistentEngine.open(origin, cow, bow.snapshot.PersistentEngine.Options.defaults());
        e.startCheckpoint();
        Path rec = dir.resolve("checkpoint.rec");
        CheckpointRecord.start("persistent", "origin", "cow", 2, "").write(rec);
        long threshold = e.status().freeBytes() / 2;
        LowSpacePolicy p = new LowSpacePolicy(e, threshold, LowSpacePolicy.Action.ABORT, rec, "origin");
        ModeEngine g = p.guard();
        BlockDevice dev = g.exports().get("");
        boolean acted = false;
        for (int k = 0; k < 200 && !acted; k++) {
            dev.write(k * 16384L, ByteBuffer.wrap(new byte[4096]));   // a new chunk each time: one copy-out
            long free = g.status().freeBytes();
            acted = p.check();
            assertEquals(free < threshold, acted, "write " + k + ": " + free + " free, threshold " + threshold);
        }
        assertTrue(acted, "the COW filled past the threshold");
        assertEquals("CHECKPOINT", e.status().state(), "the snapshot is kept");
        assertThrows(DeviceException.class, () -> dev.write(0, ByteBuffer.wrap(new byte[512])));
        assertEquals(CheckpointRecord.State.ROLLBACK_REQUESTED, CheckpointRecord.read(rec).orElseThrow().state());
        g.close();
    }

    @Test
    void recordOfAnotherDeviceIsLeftAlone() throws Exception {
        BowEngine e = engine();
        Path rec = dir.resolve("checkpoint.rec");
        e.startCheckpoint();
        CheckpointRecord other = CheckpointRecord.start("bow", "/dev/other", null, 3, "");
        other.write(rec);
        LowSpacePolicy p = new LowSpacePolicy(e, Long.MAX_VALUE, LowSpacePolicy.Action.ABORT, rec, "mem");
        assertTrue(p.check());
        assertEquals(other, CheckpointRecord.read(rec).orElseThrow());
        assertThrows(IllegalArgumentException.class, () -> LowSpacePolicy.parseAction("panic"));
    }

    /**
     * close() must not interrupt the poller: a poll may be about to commit, i.e. to do device
     * I/O, and an interrupt inside FileChannel I/O closes the device for every thread. Here the
     * poller is caught waiting to enter check() (this thread holds the policy's monitor) when
     * close() runs; the poll that follows must not run with the interrupt flag set.
     */
    @Test
    void closeNeverInterruptsAPollThatIsUnderWay() throws Exception {
        BowEngine e = engine();
        java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicInteger interruptedCalls = new java.util.concurrent.atomic.AtomicInteger();
        ModeEngine spy = new ModeEngine() {
            @Override public String mode() { return e.mode(); }
            @Override public java.util.Map<String, BlockDevice> exports() { return e.exports(); }
            @Override public EngineStatus status() {
                calls.incrementAndGet();
                if (Thread.currentThread().isInterrupted()) interruptedCalls.incrementAndGet();
                return e.status();
            }
            @Override public void startCheckpoint() throws java.io.IOException { e.startCheckpoint(); }
            @Override public void commit() throws java.io.IOException { e.commit(); }
            @Override public void close() throws java.io.IOException { e.close(); }
        };
        LowSpacePolicy p = new LowSpacePolicy(spy, 0, LowSpacePolicy.Action.COMMIT, null, "mem");
        p.closeWaitMillis = 300;   // this thread holds the monitor below, so the poll cannot finish while close() waits
        Thread poller;
        synchronized (p) {
            p.start(1);
            poller = waitForThread("low-space-policy");
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (poller.getState() != Thread.State.BLOCKED) {
                assertTrue(System.nanoTime() < deadline, "the poller never tried to enter check()");
                Thread.sleep(1);
            }
            p.close();
        }
        poller.join(10_000);
        assertFalse(poller.isAlive(), "the poller stopped after close");
        assertEquals(0, interruptedCalls.get(), "a poll ran with the interrupt flag set (" + calls.get() + " polls)");
        assertFalse(p.check(), "a closed policy does nothing");
    }

    private static Thread waitForThread(String name) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline) {
            for (Thread t : Thread.getAllStackTraces().keySet()) {
                if (t.getName().equals(name) && t.isAlive()) return t;
            }
            Thread.sleep(1);
        }
        return fail("no thread " + name);
    }

    @Test
    void theFenceCoversSnapshotExportsMadeAfterTheGuard() throws Exception {
        bow.engine.FakeSnapshotEngine fake = new bow.engine.FakeSnapshotEngine(8 * BS, 1000);
        LowSpacePolicy p = new LowSpacePolicy(fake, Long.MAX_VALUE, LowSpacePolicy.Action.ABORT, null, "fake");
        ModeEngine guarded = p.guard();
        assertTrue(guarded.snapshots().isPresent());
        fake.startCheckpoint();                                // shared mode: the "checkpoint" snapshot
        guarded.snapshots().get().createSnapshot("scratch", true);
        java.util.Map<String, BlockDevice> now = guarded.exports();
        BlockDevice scratch = now.get("snapshot-scratch");
        assertNotNull(scratch, "a snapshot made after the guard is exported through it");
        assertSame(scratch, now.get("snapshot-1"), "one fence per device, whatever its names");
        overwrite(scratch, 0);
        assertTrue(p.check(), "CHECKPOINT below the threshold: the policy aborts");
        DeviceException e = assertThrows(DeviceException.class, () -> overwrite(guarded.exports().get("snapshot-scratch"), 1));
        assertEquals(Errno.EIO, e.errno());
        assertThrows(DeviceException.class, () -> overwrite(guarded.exports().get(""), 1));
        guarded.snapshots().get().deleteSnapshot("scratch");
        assertNull(guarded.exports().get("snapshot-scratch"), "and a deleted one is gone from it");
    }
}
