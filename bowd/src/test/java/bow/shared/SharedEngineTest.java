package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.engine.SnapshotEngine.SnapshotInfo;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** The shared engine's behaviour one feature at a time: open, copy-once, limits, a full COW, the lifecycle. */
class SharedEngineTest {
    static final int CS = 8;
    static final int CB = CS * 512;

    /** Records the chunk of every COW write, to count the data chunks a request copies. */
    static final class WriteLog implements BlockDevice {
        final BlockDevice inner;
        final List<long[]> writes = new ArrayList<>();   // {offset, length}
        WriteLog(BlockDevice inner) { this.inner = inner; }
        @Override public long size() { return inner.size(); }
        @Override public void read(long o, ByteBuffer d) throws IOException { inner.read(o, d); }
        @Override public synchronized void write(long o, ByteBuffer s) throws IOException { writes.add(new long[] {o, s.remaining()}); inner.write(o, s); }
        @Override public void discard(long o, long l) throws IOException { inner.discard(o, l); }
        @Override public void flush() throws IOException { inner.flush(); }
        synchronized void clear() { writes.clear(); }
        synchronized List<long[]> list() { return new ArrayList<>(writes); }
    }

    static byte[] pattern(int size, long seed) {
        byte[] b = new byte[size];
        new Random(seed).nextBytes(b);
        return b;
    }

    static byte[] read(BlockDevice d, long off, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        d.read(off, b);
        return b.array();
    }

    static void write(BlockDevice d, long off, byte[] data) throws IOException { d.write(off, ByteBuffer.wrap(data)); }

    static SharedEngine open(BlockDevice origin, BlockDevice cow) throws IOException {
        return SharedEngine.open(origin, cow, new SharedEngine.Options(CS));
    }

    @Test
    void blankCowPassesOriginThroughAndIsFormattedAtTheFirstSnapshot() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(64 * CB);
        MemoryBlockDevice cow = new MemoryBlockDevice(256 * CB);
        SharedEngine e = open(origin, cow);
        assertEquals(Map.of("", e.exports().get("")), e.exports());
        byte[] d = pattern(3 * CB, 1);
        write(e.exports().get(""), CB / 2, d);
        assertArrayEquals(d, read(origin, CB / 2, d.length));
        assertArrayEquals(new byte[256 * CB], cow.snapshot(), "a blank COW stays blank until the first snapshot");
        assertEquals("NO_CHECKPOINT", e.status().state());
        int id = e.createSnapshot("first", false);
        assertEquals(0, id);
        assertTrue(e.exports().containsKey("snapshot-0"));
        assertSame(e.exports().get("snapshot-0"), e.exports().get("snapshot-first"));
        assertTrue(e.readOnlyExports().containsAll(List.of("snapshot-0", "snapshot-first")));
        e.close();
        SharedEngine e2 = SharedEngine.open(origin, cow, new SharedEngine.Options(16));   // the COW's chunk size wins
        assertEquals("8", e2.status().details().get("chunk_size"));
        assertEquals(List.of("first"), e2.listSnapshots().stream().map(SnapshotInfo::name).toList());
        e2.close();
    }

    @Test
    void wrongOriginAndCorruptHeadersAreRefusedWithClearErrors() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(64 * CB);
        MemoryBlockDevice cow = new MemoryBlockDevice(256 * CB);
        SharedEngine e = open(origin, cow);
        e.createSnapshot(null, false);
        write(e.exports().get(""), 0, pattern(CB, 2));   // another commit: both slots valid now
        e.close();
        IOException wrong = assertThrows(IOException.class, () -> open(new MemoryBlockDevice(32 * CB), cow));
        assertTrue(wrong.getMessage().contains("wrong origin"), wrong.getMessage());

        // slot 0 torn: slot 1 is found and used (its offset is one chunk, of a size slot 0 no longer tells)
        byte[] img = cow.snapshot();
        MemoryBlockDevice c2 = new MemoryBlockDevice(img);
        c2.write(100, ByteBuffer.wrap(new byte[] {1, 2, 3}));
        SharedEngine e2 = open(origin, c2);
        assertEquals(1, e2.listSnapshots().size());
        e2.close();

        // both slots broken
        MemoryBlockDevice c3 = new MemoryBlockDevice(img);
        c3.write(100, ByteBuffer.wrap(new byte[] {1, 2, 3}));
        c3.write(CB + 100, ByteBuffer.wrap(new byte[] {1, 2, 3}));
        IOException bad = assertThrows(IOException.class, () -> open(origin, c3));
        assertTrue(bad.getMessage().contains("corrupt") && bad.getMessage().contains("header"), bad.getMessage());
    }

    /** An origin write to a chunk shared by n snapshots copies exactly one chunk, whatever n. */
    @Test
    void originWriteCopiesOneChunkForAnyNumberOfSharers() throws Exception {
        for (int n : new int[] {1, 2, 10, 64}) {
            MemoryBlockDevice origin = new MemoryBlockDevice(pattern(64 * CB, n));
            WriteLog cow = new WriteLog(new MemoryBlockDevice(512 * CB));
            SharedEngine e = open(origin, cow);
            for (int i = 0; i < n; i++) e.createSnapshot(null, i % 2 == 0);
            byte[] old = read(origin, 5 * CB, CB);
            cow.clear();
            write(e.exports().get(""), 5 * CB + 100, pattern(200, 99));
            SharedStore st = e.store();
            SharedTree.CheckResult r = st.check();
            assertTrue(r.clean(), r.problems().toString());
            long x = st.read(() -> st.tree().lookup(5, 0));
            for (int i = 0; i < n; i++) {
                final int id = i;
                assertEquals(x, (long) st.read(() -> st.tree().lookup(5, id)), "every snapshot reads the one copy");
            }
            int dataWrites = 0;
            for (long[] w : cow.list()) {
                long first = w[0] / CB, last = (w[0] + w[1] - 1) / CB;
                for (long c = first; c <= last; c++) {
                    String what = r.reachable().get(c);
                    if (what != null && what.startsWith("exception data")) dataWrites++;
                }
            }
            assertEquals(1, dataWrites, n + " snapshots: data chunks written by one origin write");
            for (int i = 0; i < n; i++) assertArrayEquals(old, read(e.exports().get("snapshot-" + i), 5 * CB, CB));
            // a second write of the same chunk copies nothing
            cow.clear();
            write(e.exports().get(""), 5 * CB, pattern(CB, 98));
            assertTrue(cow.list().isEmpty(), "no COW write when no snapshot shares the chunk any more");
            e.close();
        }
    }

    @Test
    void the65thSnapshotIsRefusedNamingTheLimit() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(64 * CB);
        MemoryBlockDevice cow = new MemoryBlockDevice(512 * CB);
        SharedEngine e = open(origin, cow);
        for (int i = 0; i < 64; i++) assertEquals(i, e.createSnapshot(i % 3 == 0 ? "n" + i : null, false));
        IllegalStateException ex = assertThrows(IllegalStateException.class, () -> e.createSnapshot(null, false));
        assertTrue(ex.getMessage().contains("64"), ex.getMessage());
        assertThrows(IllegalArgumentException.class, () -> e.createSnapshot("n0", false), "duplicate name");
        assertThrows(IllegalArgumentException.class, () -> e.createSnapshot("123", false), "all digits");
        e.deleteSnapshot("n3");
        assertTrue(e.awaitReclaim(10_000));
        assertEquals(3, e.createSnapshot("again", true), "the lowest reclaimed ID is reused");
        assertEquals(64, e.listSnapshots().size());
        e.close();
    }

    @Test
    void fullCowFailsWithEnospcKeepsSnapshotsAndDeleteGivesSpaceBack() throws Exception {
        byte[] init = pattern(64 * CB, 5);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = new MemoryBlockDevice(40 * CB);
        SharedEngine e = open(origin, cow);
        e.createSnapshot("a", false);
        e.createSnapshot("b", true);
        BlockDevice o = e.exports().get("");
        DeviceException full = null;
        int c = 0;
        for (; c < 64; c++) {
            try {
                write(o, (long) c * CB, pattern(CB, 1000 + c));
            } catch (DeviceException ex) {
                full = ex;
                break;
            }
        }
        assertNotNull(full, "the COW should fill up");
        assertEquals(Errno.ENOSPC, full.errno());
        assertEquals(SharedEngine.FULL_MESSAGE, e.status().details().get("error"));
        assertArrayEquals(init, read(e.exports().get("snapshot-a"), 0, init.length), "snapshot a intact");
        assertArrayEquals(init, read(e.exports().get("snapshot-b"), 0, init.length), "snapshot b intact");
        assertArrayEquals(Arrays.copyOfRange(init, c * CB, (c + 1) * CB), read(origin, (long) c * CB, CB), "the refused write did not reach the origin");
        DeviceException snapFull = assertThrows(DeviceException.class, () -> write(e.exports().get("snapshot-b"), 63 * CB, pattern(CB, 7)));
        assertEquals(Errno.ENOSPC, snapFull.errno());
        e.deleteSnapshot("a");
        e.deleteSnapshot("b");
        assertTrue(e.awaitReclaim(10_000));
        write(o, (long) c * CB, pattern(CB, 1000 + c));
        assertFalse(e.status().details().containsKey("error"), e.status().details().toString());
        SharedStore st = e.store();
        assertEquals(st.nrChunks() - st.firstDataChunk() - 2, st.freeChunks(), "every chunk but one leaf and the root is free again");
        e.close();
    }

    @Test
    void readOnlySnapshotsRefuseWritesAndDeletedOnesFailEveryRequest() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(16 * CB, 3));
        SharedEngine e = open(origin, new MemoryBlockDevice(128 * CB));
        e.createSnapshot("ro", false);
        BlockDevice ro = e.exports().get("snapshot-ro");
        DeviceException w = assertThrows(DeviceException.class, () -> write(ro, 0, new byte[512]));
        assertEquals(Errno.EPERM, w.errno());
        e.deleteSnapshot("0");
        assertFalse(e.exports().containsKey("snapshot-ro"));
        assertThrows(IOException.class, () -> read(ro, 0, 512));
        assertThrows(IOException.class, ro::flush);
        assertThrows(IllegalArgumentException.class, () -> e.deleteSnapshot("ro"));
        e.close();
    }

    @Test
    void checkpointLifecycleOnSnapshots() throws Exception {
        byte[] init = pattern(32 * CB, 4);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        SharedEngine e = open(origin, new MemoryBlockDevice(256 * CB));
        e.createSnapshot("other", false);
        e.startCheckpoint();
        assertEquals("CHECKPOINT", e.status().state());
        assertThrows(IllegalStateException.class, e::startCheckpoint);
        BlockDevice o = e.exports().get("");
        write(o, 3 * CB + 7, pattern(5 * CB, 8));
        e.commit();
        assertEquals("NO_CHECKPOINT", e.status().state());
        byte[] kept = read(o, 0, init.length);
        e.startCheckpoint();
        write(o, 0, pattern(20 * CB, 9));
        write(o, 30 * CB, pattern(CB, 10));
        e.rollback();
        assertEquals("NO_CHECKPOINT", e.status().state());
        assertArrayEquals(kept, read(o, 0, init.length), "rolled back to the checkpoint");
        assertArrayEquals(init, read(e.exports().get("snapshot-other"), 0, init.length), "the other snapshot is untouched");
        assertEquals("1", e.status().details().get("snapshots"));
        assertTrue(e.status().details().get("rollback").endsWith(" chunks"));
        e.close();
    }

    @Test
    void unfinishedDeleteResumesAfterReopen() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(96 * CB, 11));
        MemoryBlockDevice cow = new MemoryBlockDevice(1024 * CB);
        SharedStore.Tuning small = new SharedStore.Tuning(4, Leaf.bytesFor(2, 16), 8, 16);
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), small);
        e.createSnapshot(null, false);
        e.createSnapshot(null, true);
        write(e.exports().get(""), 0, pattern(96 * CB, 12));
        e.pauseReclaim = true;
        e.deleteSnapshot("0");
        e.close();
        SharedFormat.Header h = SharedStore.readHeader(cow);
        assertEquals(1, h.deletingMask(), "the delete is durable, its reclaim not done");
        SharedEngine e2 = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), small);
        assertTrue(e2.awaitReclaim(10_000));
        assertEquals(0, e2.store().read(() -> e2.store().tree().deleting()));
        assertTrue(e2.store().check().clean());
        e2.close();
        assertEquals(0, SharedStore.readHeader(cow).deletingMask());
    }
}
