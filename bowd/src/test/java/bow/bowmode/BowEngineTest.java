package bow.bowmode;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;
import bow.bowlog.LogValidator;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static bow.bowmode.BowTestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

class BowEngineTest {
    static byte[] randomImage(int size, long seed) {
        byte[] b = new byte[size];
        new Random(seed).nextBytes(b);
        return b;
    }

    static LogBlock block0(MemoryBlockDevice disk, int bs) {
        return new LogBlock(Arrays.copyOf(disk.snapshot(), bs));
    }

    @Test
    void invalidTransitionsAreRefusedAndChangeNothing() throws Exception {
        MemoryBlockDevice disk = new MemoryBlockDevice(randomImage(64 * 4096, 1));
        BowEngine eng = BowEngine.open(disk, "mem", 4096);
        IllegalStateException e = assertThrows(IllegalStateException.class, eng::commit);
        assertTrue(e.getMessage().contains("state 0 TRIM"), e.getMessage());
        byte[] before = disk.snapshot();
        // No free space known yet: starting is refused with a hint.
        DeviceException nospace = assertThrows(DeviceException.class, eng::startCheckpoint);
        assertEquals(Errno.ENOSPC, nospace.errno());
        assertTrue(nospace.getMessage().contains("trim"), nospace.getMessage());
        assertArrayEquals(before, disk.snapshot());

        eng.discard(8 * 4096, 8 * 4096);
        eng.startCheckpoint();
        assertThrows(IllegalStateException.class, eng::startCheckpoint);
        eng.commit();
        assertThrows(IllegalStateException.class, eng::commit);
        assertThrows(IllegalStateException.class, eng::startCheckpoint);
        assertEquals(BowEngine.State.COMMITTED, eng.state());
    }

    @Test
    void refusesADeviceThatStillCarriesALog() throws Exception {
        MemoryBlockDevice disk = new MemoryBlockDevice(randomImage(64 * 4096, 2));
        BowEngine eng = BowEngine.open(disk, "mem", 4096);
        eng.discard(4096, 32 * 4096);
        eng.startCheckpoint();
        CheckpointPresentException e = assertThrows(CheckpointPresentException.class, () -> BowEngine.open(disk, "mem", 4096));
        assertTrue(e.getMessage().contains("bowctl rollback --device mem"), e.getMessage());
        assertNotNull(BowEngine.openIgnoringLog(disk, "mem", 4096));
    }

    @Test
    void startWritesTheDocumentedLogAndTrimsAreNotPassedDown() throws Exception {
        int bs = 4096;
        byte[] image = randomImage(32 * bs, 3);
        MemoryBlockDevice disk = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        eng.discard(5 * bs, 3 * bs);
        eng.discard(20 * bs + 512, bs);       // partial blocks are not free
        assertArrayEquals(image, disk.snapshot(), "trims are not passed down in state 0");
        eng.startCheckpoint();
        LogBlock log = block0(disk, bs);
        assertEquals(LogBlock.MAGIC, log.magic());
        assertEquals(1, log.count());
        assertEquals(0, log.sequence());
        assertEquals(5 * 8, log.sector0(), "live block 0 is in the first free block");
        assertEquals(new LogEntry(0, 40, bs, BowCrc.entryChecksum(0, bs, image, 0, bs)), log.entry(0));
        assertArrayEquals(Arrays.copyOf(image, bs), Arrays.copyOfRange(disk.snapshot(), 5 * bs, 6 * bs));
        // Bytes of block 0 past the header sector are left alone.
        assertArrayEquals(Arrays.copyOfRange(image, 512, bs), Arrays.copyOfRange(disk.snapshot(), 512, bs));
        assertArrayEquals(Arrays.copyOf(image, bs), read(eng, 0, bs), "block 0 reads its live content");
        assertEquals(List.of(new long[] {5 * bs, 8 * bs}).get(0)[0], eng.freeRangesAtStart().get(0)[0]);
        assertEquals(1, eng.freeRangesAtStart().size());
        // Free: the two blocks left after sector0_current (the log has room for their entries).
        assertEquals(2L * bs, eng.freeBytes());
    }

    @Test
    void sector0FieldFollowsTheLiveBlock0() throws Exception {
        int bs = 1024;
        MemoryBlockDevice disk = new MemoryBlockDevice(randomImage(64 * bs, 4));
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        eng.discard(10L * bs, 40L * bs);
        eng.startCheckpoint();
        Random r = new Random(5);
        for (int i = 0; i < 20; i++) {
            // Alternate writes into block 0 and into the physical block that holds it.
            long s0 = block0(disk, bs).sector0() * 512;
            byte[] data = new byte[512];
            r.nextBytes(data);
            write(eng, i % 2 == 0 ? 512 : s0, data);
            long now = block0(disk, bs).sector0() * 512;
            byte[] logical0 = read(eng, 0, bs);
            assertArrayEquals(logical0, Arrays.copyOfRange(disk.snapshot(), (int) now, (int) now + bs),
                    "the header's sector0 points at the live block 0 after write " + i);
        }
        LogValidator.validate(block0(disk, bs), -1, disk.size(), bs);
    }

    @Test
    void fullLogRollsOverIntoABackedUpBlock() throws Exception {
        int bs = 512;   // 20 entries a block
        byte[] image = randomImage(400 * bs, 6);
        MemoryBlockDevice disk = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        eng.discard(200L * bs, 199L * bs);
        eng.startCheckpoint();
        // 50 single-block writes to separate unchanged blocks: 50 entries -> sequences 0, 1, 2.
        for (int i = 0; i < 50; i++) write(eng, (long) (1 + 2 * i) * bs, new byte[bs]);
        LogBlock newest = block0(disk, bs);
        assertEquals(2, newest.sequence());
        LogEntry e0 = newest.entry(0);
        assertEquals(0, e0.sourceSector());
        byte[] prev = Arrays.copyOfRange(disk.snapshot(), (int) e0.destByte(), (int) e0.destByte() + bs);
        LogBlock previous = new LogBlock(prev);
        assertEquals(1, previous.sequence());
        assertEquals(20, previous.count(), "a log block is backed up when full");
        assertEquals(BowCrc.entryChecksum(0, bs, prev, 0, bs), e0.checksum());
        LogValidator.validate(previous, 1, disk.size(), bs);
        assertEquals(50 - 19 - 19 + 1, newest.count());
        byte[] rolled = rolledBack(disk.snapshot());
        assertEqualOutside(image, rolled, eng.freeRangesAtStart(), "rollback across sequences");
    }

    @Test
    void outOfSpaceFailsCleanlyAndTheCheckpointStaysUsable() throws Exception {
        int bs = 4096;
        byte[] image = randomImage(64 * bs, 7);
        MemoryBlockDevice disk = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        eng.discard(56L * bs, 8L * bs);
        eng.startCheckpoint();
        long free = eng.freeBytes();
        assertTrue(free > 0);
        // A write needing more backup space than there is: refused whole.
        byte[] big = new byte[20 * bs];
        Arrays.fill(big, (byte) 0x5a);
        byte[] devBefore = disk.snapshot();
        DeviceException e = assertThrows(DeviceException.class, () -> write(eng, 10L * bs, big));
        assertEquals(Errno.ENOSPC, e.errno());
        assertTrue(e.getMessage().contains("can still be committed or rolled back"), e.getMessage());
        assertArrayEquals(devBefore, disk.snapshot(), "a refused write changes nothing on disk");
        assertEquals(free, eng.freeBytes(), "nor in the map");
        // Fill what is left one block at a time until ENOSPC.
        int written = 0;
        for (int b = 1; b < 50; b++) {
            try {
                write(eng, (long) b * bs, Arrays.copyOf(big, bs));
                written++;
            } catch (DeviceException x) {
                assertEquals(Errno.ENOSPC, x.errno());
                break;
            }
        }
        assertEquals(free / bs, written, "every reported free byte was usable");
        assertEquals(0, eng.freeBytes());
        // Writes to blocks already changed still work in place.
        write(eng, bs, new byte[bs]);
        byte[] rolled = rolledBack(disk.snapshot());
        assertEqualOutside(image, rolled, eng.freeRangesAtStart(), "rollback after ENOSPC");
        eng.commit();
    }

    @Test
    void rejectsUnalignedRequests() throws Exception {
        BowEngine eng = BowEngine.open(new MemoryBlockDevice(64 * 4096), "mem", 4096);
        assertEquals(Errno.EINVAL, assertThrows(DeviceException.class, () -> eng.write(100, ByteBuffer.allocate(512))).errno());
        assertEquals(Errno.EINVAL, assertThrows(DeviceException.class, () -> eng.read(0, ByteBuffer.allocate(100))).errno());
        assertEquals(Errno.ENOSPC, assertThrows(DeviceException.class, () -> eng.write(64 * 4096, ByteBuffer.allocate(512))).errno());
        assertThrows(IllegalArgumentException.class, () -> BowEngine.open(new MemoryBlockDevice(64 * 4096), "mem", 3000));
        assertThrows(java.io.IOException.class, () -> BowEngine.open(new MemoryBlockDevice(3 * 4096), "mem", 4096));
    }

    @Test
    void concurrentWritersShareCommitsAndRollbackIsExact() throws Exception {
        int bs = 4096, blocks = 2048;
        byte[] image = randomImage(blocks * bs, 8);
        MemoryBlockDevice disk = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        eng.discard(1024L * bs, 1024L * bs);
        eng.startCheckpoint();
        ExecutorService pool = Executors.newFixedThreadPool(8);
        List<Future<?>> fs = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
            int thread = t;
            fs.add(pool.submit(() -> {
                Random r = new Random(thread);
                for (int i = 0; i < 300; i++) {
                    // Overlapping regions across threads, including block 0.
                    long off = 512L * r.nextInt(1024 * 8);
                    byte[] d = new byte[512 * (1 + r.nextInt(16))];
                    r.nextBytes(d);
                    write(eng, Math.min(off, 1024L * bs - d.length), d);
                }
                return null;
            }));
        }
        for (Future<?> f : fs) f.get();
        pool.shutdown();
        byte[] rolled = rolledBack(disk.snapshot());
        assertEqualOutside(image, rolled, eng.freeRangesAtStart(), "rollback after concurrent writers");
        assertTrue(eng.status().logEntries() > 0);
    }
}
