package bow.bowmode;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.FaultDevice;
import bow.blockdev.testing.GateDevice;
import bow.blockdev.testing.GateDevice.Gate;
import bow.blockdev.testing.GateDevice.Match;
import bow.blockdev.testing.GateDevice.Op;
import bow.blockdev.testing.GateDevice.Request;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;
import java.util.Random;

import static bow.bowmode.BowTestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Each race that once cost a rollback, made deterministic: a gate holds one
 * request at the exact point where another must not slip in, the other request
 * runs, then the gate opens. The rollback (or the commit) must still be exact.
 * See the busy-block contract at the top of {@link BowEngine}.
 */
class BowEngineRaceTest {
    static final Duration T = Duration.ofSeconds(20);

    /** A device of {@code blocks} random blocks; blocks from {@code freeFrom} on are trimmed. */
    record Rig(MemoryBlockDevice mem, FaultDevice faults, GateDevice gate, BowEngine eng, byte[] start,
               List<long[]> free, int bs) {
        long firstFreeBlock() {
            for (var r : eng.ranges()) if (r.type().equals("Free")) return r.offset() / bs;
            throw new AssertionError("no free block");
        }

        /** Where the next one-block backup goes: the top block of the highest free run. */
        long nextBackupBlock() {
            long top = -1;
            for (var r : eng.ranges()) if (r.type().equals("Free")) top = (r.offset() + r.length()) / bs - 1;
            if (top < 0) throw new AssertionError("no free block");
            return top;
        }

        void assertRollbackExact(String what) throws Exception {
            assertEqualOutside(start, rolledBack(mem.snapshot()), free, what);
        }
    }

    static Rig rig(int bs, int blocks, int freeFrom) throws Exception {
        byte[] image = new byte[bs * blocks];
        new Random(bs * 31L + blocks).nextBytes(image);
        MemoryBlockDevice mem = new MemoryBlockDevice(image);
        FaultDevice faults = new FaultDevice(mem);
        GateDevice gate = new GateDevice(faults);
        BowEngine eng = BowEngine.open(gate, "race", bs);
        eng.discard((long) freeFrom * bs, (long) (blocks - freeFrom) * bs);
        List<long[]> free = eng.freeRangesAtStart();
        eng.startCheckpoint();
        return new Rig(mem, faults, gate, eng, image, free, bs);
    }

    static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        new Random(seed).nextBytes(b);
        return b;
    }

    /** Race 1: a discard of a block whose plain (no-backup) write is still in flight. */
    @Test
    void discardOfABlockWithAWriteInFlightDoesNotMakeItBackupSpace() throws Exception {
        Rig r = rig(4096, 64, 32);
        long f = r.firstFreeBlock();
        Gate g = r.gate.arm(Op.WRITE, Match.overlapping(f * 4096, 4096));
        Request late = GateDevice.start("late write", () -> write(r.eng, f * 4096, pattern(4096, 1)));
        assertTrue(g.awaitArrived(T), "the write into free block " + f + " reaches the device");
        // The filesystem discards the same block while that write is in flight ...
        r.eng.discard(f * 4096, 4096);
        // ... and then overwrites a data block, whose backup needs a free block.
        write(r.eng, 3 * 4096, pattern(4096, 2));
        g.release();
        late.join(T);
        r.eng.flush();
        r.assertRollbackExact("backup of block 3 survives the late write into block " + f);
    }

    /** Race 1, second half: the in-flight marker must last until the data write has landed. */
    @Test
    void discardWhileABackedUpWriteLandsDoesNotFreeIt() throws Exception {
        Rig r = rig(4096, 64, 32);
        // Hold the data write of block 5 (after its backup is durable).
        Gate g = r.gate.arm(Op.WRITE, Phase_BEFORE_data(5 * 4096));
        Request w = GateDevice.start("write 5", () -> write(r.eng, 5 * 4096, pattern(4096, 3)));
        assertTrue(g.awaitArrived(T));
        r.eng.discard(5 * 4096, 4096);
        // Block 5 must not have become backup space: the backup of block 6 goes elsewhere.
        write(r.eng, 6 * 4096, pattern(4096, 4));
        g.release();
        w.join(T);
        r.eng.flush();
        r.assertRollbackExact("backup of block 6 survives the data write of block 5");
    }

    /** Matches the second write to {@code offset}: the first is ... none; the data write itself. */
    private static Match Phase_BEFORE_data(long offset) {
        return (o, l) -> o == offset && l == 4096;
    }

    /** Race 2: a filesystem write to the block a full log block is being copied to. */
    @Test
    void writeToTheRolloverBlockWaitsUntilTheLogCopyIsDurable() throws Exception {
        int bs = 512;
        Rig r = rig(bs, 200, 100);
        int capacity = bow.bowlog.LogBlock.capacity(bs);
        // Fill the log block: entry 0 is block 0's backup, then one entry per data block.
        for (int b = 1; b < capacity; b++) write(r.eng, (long) b * bs, pattern(bs, b));
        assertEquals(capacity, r.eng.status().logEntries());
        // The next backup triggers the rollover: its backup takes the top free block, the
        // copy of the full log block the one below.
        long backupDest = r.nextBackupBlock();
        long logCopy = backupDest - 1;
        Gate g = r.gate.arm(Op.WRITE, Match.overlapping(logCopy * bs, bs));
        Request trigger = GateDevice.start("rollover", () -> write(r.eng, 50L * bs, pattern(bs, 50)));
        assertTrue(g.awaitArrived(T), "the log copy is written to block " + logCopy);
        // The filesystem writes the block the log copy is going to (free, to the filesystem).
        Request intruder = GateDevice.start("intruder", () -> write(r.eng, logCopy * bs, pattern(bs, 77)));
        intruder.await(Duration.ofMillis(300));
        g.release();
        trigger.join(T);
        intruder.join(T);
        r.eng.flush();
        assertEquals(1, r.eng.status().logSequence());
        r.assertRollbackExact("log copy at block " + logCopy);
    }

    /** Race 3: the first write into block 0 moves the live block 0; its source must not change meanwhile. */
    @Test
    void moveOfTheLiveBlock0IsNotRacedByAWriteToItsSource() throws Exception {
        int bs = 4096;
        Rig r = rig(bs, 64, 32);
        long s0 = Long.parseLong(r.eng.status().details().get("sector0")) / (bs / 512);
        // A sub-block write into block 0: the rest of block 0 comes from the move's source.
        Gate g = r.gate.arm(Op.READ, Match.overlapping(s0 * bs, bs));
        Request head = GateDevice.start("block 0", () -> write(r.eng, 0, pattern(512, 9)));
        assertTrue(g.awaitArrived(T), "the move reads block " + s0);
        Request other = GateDevice.start("write to " + s0, () -> write(r.eng, s0 * bs, pattern(bs, 10)));
        other.await(Duration.ofMillis(300));
        g.release();
        head.join(T);
        other.join(T);
        byte[] expect = r.start.clone();
        System.arraycopy(pattern(512, 9), 0, expect, 0, 512);
        assertArrayEquals(java.util.Arrays.copyOf(expect, bs), read(r.eng, 0, bs), "block 0 as the client sees it");
        r.eng.commit();
        assertArrayEquals(java.util.Arrays.copyOf(expect, bs), read(r.mem, 0, bs), "block 0 after the commit");
    }

    /** Race 4: a writer waiting on a block whose backup then fails must not be acknowledged. */
    @Test
    void writerWaitingOnAFailedBackupIsRefused() throws Exception {
        Rig r = rig(4096, 64, 32);
        long dest = r.nextBackupBlock();
        Gate g = r.gate.arm(Op.WRITE, Match.overlapping(dest * 4096, 4096));
        Request first = GateDevice.start("first", () -> write(r.eng, 7 * 4096, pattern(4096, 11)));
        assertTrue(g.awaitArrived(T), "the backup copy of block 7 is being written");
        Request second = GateDevice.start("second", () -> write(r.eng, 7 * 4096, pattern(4096, 12)));
        second.await(Duration.ofMillis(300));
        r.faults.failNth(FaultDevice.Op.FLUSH, 1);
        g.release();
        Exception e1 = assertThrows(Exception.class, () -> first.join(T));
        Exception e2 = assertThrows(Exception.class, () -> second.join(T), "the waiting writer is refused");
        assertEquals(Errno.EIO, ((DeviceException) e2).errno(), e2.toString());
        assertNotNull(e1);
        r.faults.clear();
        assertThrows(DeviceException.class, () -> write(r.eng, 9 * 4096, pattern(4096, 13)), "writes refused from then on");
        assertTrue(r.eng.status().details().containsKey("error"));
        r.assertRollbackExact("after a failed backup");
    }

    /** An Error (out of memory) during a backup fences writes like an I/O error, and leaves nothing hanging. */
    @Test
    void anErrorDuringABackupFencesWritesAndLeavesNoMarkers() throws Exception {
        Rig r = rig(4096, 64, 32);
        r.faults.throwNth(FaultDevice.Op.READ, 1, () -> new OutOfMemoryError("injected"));
        assertThrows(Throwable.class, () -> write(r.eng, 4 * 4096, pattern(4096, 14)));
        r.faults.clear();
        Request again = GateDevice.start("again", () -> write(r.eng, 4 * 4096, pattern(4096, 15)));
        assertTrue(again.await(T), "a write to the same block does not hang on a marker left behind");
        assertInstanceOf(DeviceException.class, again.failure());
        assertTrue(r.eng.status().details().get("error").contains("injected"), r.eng.status().details().toString());
        byte[] b = read(r.eng, 4 * 4096, 4096);
        assertArrayEquals(java.util.Arrays.copyOfRange(r.start, 4 * 4096, 5 * 4096), b, "block 4 never changed");
        r.assertRollbackExact("after an Error");
    }

}
