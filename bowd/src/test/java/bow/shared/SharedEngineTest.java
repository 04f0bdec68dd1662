package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.GateDevice;
import bow.blockdev.testing.JitterDevice;
import bow.engine.SnapshotEngine.SnapshotInfo;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.time.Duration;
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

    /** A second writer of a chunk whose copy-out is not yet durable must not reach the origin first. */
    @Test
    void secondWriterOfAChunkWaitsForTheFirstOnesCommit() throws Exception {
        byte[] init = pattern(16 * CB, 21);
        MemoryBlockDevice originMem = new MemoryBlockDevice(init);
        GateDevice origin = new GateDevice(originMem);
        GateDevice cow = new GateDevice(new MemoryBlockDevice(256 * CB));
        SharedEngine e = open(origin, cow);
        e.createSnapshot(null, false);
        BlockDevice o = e.exports().get("");
        GateDevice.Gate commit = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        GateDevice.Request a = GateDevice.start("first", () -> write(o, 5 * CB, pattern(CB, 22)));
        assertTrue(commit.awaitArrived(Duration.ofSeconds(10)));
        GateDevice.Request b = GateDevice.start("second", () -> write(o, 5 * CB + 512, pattern(512, 23)));
        GateDevice.Request r = GateDevice.start("snapshot read", () -> read(e.exports().get("snapshot-0"), 5 * CB, CB));
        assertFalse(b.await(Duration.ofMillis(300)), "the second writer went on while the first one's copy-out was not durable");
        assertFalse(r.isDone(), "a snapshot read of a chunk being copied out must wait for it");
        assertArrayEquals(Arrays.copyOfRange(init, 5 * CB, 6 * CB), read(originMem, 5 * CB, CB), "the origin chunk is untouched before the commit");
        commit.release();
        a.join(Duration.ofSeconds(10));
        b.join(Duration.ofSeconds(10));
        r.join(Duration.ofSeconds(10));
        assertArrayEquals(Arrays.copyOfRange(init, 5 * CB, 6 * CB), read(e.exports().get("snapshot-0"), 5 * CB, CB));
        byte[] want = pattern(CB, 22);
        System.arraycopy(pattern(512, 23), 0, want, 512, 512);
        assertArrayEquals(want, read(o, 5 * CB, CB));
        e.close();
    }

    /** Writes made while a rollback runs land on the rolled-back content and win over it. */
    @Test
    void rollbackKeepsTheWritesMadeWhileItRuns() throws Exception {
        int chunks = 96;
        byte[] init = pattern(chunks * CB, 31);
        MemoryBlockDevice originMem = new MemoryBlockDevice(init);
        BlockDevice origin = new JitterDevice(originMem, 300);
        SharedEngine e = open(origin, new JitterDevice(new MemoryBlockDevice(1024 * CB), 300));
        e.createSnapshot("t", false);
        BlockDevice o = e.exports().get("");
        write(o, 0, pattern(chunks * CB, 32));
        e.createSnapshot("later", false);
        byte[] later = read(o, 0, chunks * CB);
        e.rollbackTo("t");
        assertEquals("ROLLING_BACK", e.status().state());
        assertTrue(e.readOnlyExports().contains("snapshot-t"));
        assertThrows(IllegalStateException.class, () -> e.createSnapshot(null, false));
        assertThrows(IllegalStateException.class, () -> e.rollbackTo("later"));
        byte[] want = init.clone();
        Random rnd = new Random(33);
        for (int i = 0; i < 40; i++) {
            int off = rnd.nextInt(chunks * CB - 3000), len = 1 + rnd.nextInt(3000);
            byte[] d = pattern(len, 100 + i);
            write(o, off, d);
            System.arraycopy(d, 0, want, off, len);
        }
        e.awaitRollback();
        assertEquals("NO_CHECKPOINT", e.status().state());
        assertEquals(chunks + "/" + chunks + " chunks", e.status().details().get("rollback"));
        assertArrayEquals(want, read(o, 0, chunks * CB), "the snapshot's content with the writes made since on top");
        assertArrayEquals(init, read(e.exports().get("snapshot-t"), 0, chunks * CB));
        assertArrayEquals(later, read(e.exports().get("snapshot-later"), 0, chunks * CB), "a snapshot taken before the rollback keeps its content");
        assertTrue(e.store().check().clean());
        e.close();
    }

    /** Open reads the two header slots and one bitmap copy, nothing of the tree; the block cache stays bounded. */
    @Test
    void openReadsNoTreeBlocksAndTheCacheIsBounded() throws Exception {
        int chunks = 1024;
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(chunks * CB, 41));
        MemoryBlockDevice cow = new MemoryBlockDevice(4096 * CB);
        SharedStore.Tuning small = new SharedStore.Tuning(8, Leaf.bytesFor(2, 16), 8, 32);
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(CS), small);
        e.createSnapshot(null, false);
        e.createSnapshot(null, false);
        write(e.exports().get(""), 0, pattern(chunks * CB, 42));   // an exception for every chunk
        assertTrue(e.store().cachedBlocks() <= 32, "cache holds " + e.store().cachedBlocks() + " blocks");
        int depth = e.store().read(() -> e.store().tree().level());
        assertTrue(depth >= 3, "tree of " + depth + " levels");
        e.close();
        bow.blockdev.CountingDevice counted = new bow.blockdev.CountingDevice(cow);
        SharedEngine e2 = SharedEngine.open(origin, counted, new SharedEngine.Options(CS), small);
        assertEquals(3, counted.reads(), "two header slots and one read of the bitmap copy");
        byte[] old = pattern(chunks * CB, 41);
        assertArrayEquals(old, read(e2.exports().get("snapshot-1"), 0, chunks * CB));
        assertTrue(e2.store().cachedBlocks() <= 32, "cache holds " + e2.store().cachedBlocks() + " blocks");
        e2.close();
    }

    @Test
    void listCountsChunksHeldAloneAndSharedAndUsageAndStatusAgree() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(32 * CB, 51));
        SharedEngine e = open(origin, new MemoryBlockDevice(256 * CB));
        assertEquals(0, e.usage().freeChunks());
        e.createSnapshot("a", false);
        e.createSnapshot("b", true);
        write(e.exports().get(""), 0, pattern(3 * CB, 52));            // 3 chunks shared by a and b
        write(e.exports().get("snapshot-b"), 10 * CB, pattern(2 * CB, 53));   // 2 chunks b holds alone
        write(e.exports().get("snapshot-b"), 0, pattern(100, 54));      // b unshares chunk 0
        List<SnapshotInfo> l = e.listSnapshots();
        assertEquals(2, l.size());
        SnapshotInfo a = l.get(0), b = l.get(1);
        assertEquals("a", a.name());
        assertFalse(a.writable());
        assertTrue(b.writable());
        assertTrue(a.createdMillis() > 0 && a.createdMillis() <= System.currentTimeMillis());
        assertEquals(1, a.chunksAlone(), "chunk 0, which b unshared");
        assertEquals(2, a.chunksShared());
        assertEquals(3, b.chunksAlone());
        assertEquals(2, b.chunksShared());
        var u = e.usage();
        assertEquals(CB, u.chunkBytes());
        assertEquals(256, u.totalChunks());
        var st = e.status();
        assertEquals("shared", st.mode());
        assertEquals(32L * CB, st.deviceSize());
        assertEquals(u.freeChunks() * CB, st.freeBytes());
        assertEquals(Long.toString(u.freeChunks()), st.details().get("free_chunks"));
        assertEquals("256", st.details().get("total_chunks"));
        assertEquals("2", st.details().get("snapshots"));
        assertTrue(st.backedUpBytes() >= 6L * CB, "6 data chunks at least: " + st.backedUpBytes());
        assertNotNull(st.details().get("status"));
        e.close();
    }

    /** An I/O error or an Error during a copy-out or its commit fences writes; the store on disk stays intact. */
    @Test
    void failedCopyOutOrCommitFencesWritesAndKeepsTheDiskIntact() throws Exception {
        // one copy-out commit: the data chunk, the leaf and root node (one run), the bitmap chunk, the header; two flushes
        for (int k = 1; k <= 6; k++) {
            for (boolean error : new boolean[] {false, true}) {
                byte[] init = pattern(32 * CB, 60 + k);
                MemoryBlockDevice originMem = new MemoryBlockDevice(init);
                MemoryBlockDevice cowMem = new MemoryBlockDevice(256 * CB);
                bow.blockdev.testing.FaultDevice cow = new bow.blockdev.testing.FaultDevice(cowMem);
                SharedEngine e = open(originMem, cow);
                e.createSnapshot("s", false);
                BlockDevice o = e.exports().get("");
                write(o, 0, pattern(CB, 70));     // one committed copy-out before the fault
                bow.blockdev.testing.FaultDevice.Op op = k <= 4 ? bow.blockdev.testing.FaultDevice.Op.WRITE : bow.blockdev.testing.FaultDevice.Op.FLUSH;
                int nth = k <= 4 ? k : k - 4;
                if (error) cow.throwNth(op, nth, () -> new AssertionError("injected"));
                else cow.failNth(op, nth);
                String what = "fault " + op + " #" + nth + (error ? " (Error)" : "");
                Throwable t = assertThrows(Throwable.class, () -> write(o, 4 * CB, pattern(2 * CB, 71)), what);
                assertTrue(t instanceof IOException, what + ": " + t);
                assertTrue(e.status().details().getOrDefault("error", "").startsWith("writes refused"), what + ": " + e.status().details());
                assertArrayEquals(Arrays.copyOfRange(init, 4 * CB, 6 * CB), read(originMem, 4 * CB, 2 * CB), what + ": origin written before its copy-out was durable");
                assertThrows(IOException.class, () -> write(o, 20 * CB, new byte[512]), what + ": fenced");
                try { e.close(); } catch (IOException | AssertionError ignored) { /* the engine is fenced */ }
                cow.clear();
                SharedEngine r = open(originMem, cowMem);
                assertTrue(r.store().check().clean(), what + ": " + r.store().check().problems());
                assertArrayEquals(init, read(r.exports().get("snapshot-s"), 0, init.length), what + ": snapshot");
                write(r.exports().get(""), 4 * CB, pattern(2 * CB, 71));
                assertArrayEquals(init, read(r.exports().get("snapshot-s"), 0, init.length), what + ": snapshot after the write is redone");
                r.close();
            }
        }
    }

    /** Writers that arrive while a commit does its I/O share the next commit. */
    @Test
    void writersWaitingForACommitShareTheNextOne() throws Exception {
        MemoryBlockDevice originMem = new MemoryBlockDevice(pattern(32 * CB, 81));
        GateDevice cow = new GateDevice(new MemoryBlockDevice(256 * CB));
        SharedEngine e = open(originMem, cow);
        e.createSnapshot(null, false);
        BlockDevice o = e.exports().get("");
        long before = e.store().commits();
        GateDevice.Gate g = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        List<GateDevice.Request> rs = new ArrayList<>();
        rs.add(GateDevice.start("w0", () -> write(o, 0, pattern(CB, 82))));
        assertTrue(g.awaitArrived(Duration.ofSeconds(10)));
        for (int i = 1; i <= 6; i++) {
            final int c = 2 * i;
            rs.add(GateDevice.start("w" + i, () -> write(o, (long) c * CB, pattern(CB, 82 + c))));
        }
        long deadline = System.currentTimeMillis() + 10_000;
        while (e.store().waitingForCommit() < 6 && System.currentTimeMillis() < deadline) Thread.sleep(5);
        assertEquals(6, e.store().waitingForCommit(), "six writers wait for the commit in flight");
        g.release();
        for (GateDevice.Request r : rs) r.join(Duration.ofSeconds(10));
        assertEquals(2, e.store().commits() - before, "the six later copy-outs share one commit");
        for (int i = 1; i <= 6; i++) assertArrayEquals(pattern(CB, 82 + 2 * i), read(o, 2L * i * CB, CB));
        assertTrue(e.store().check().clean());
        e.close();
    }

    @Test
    void checkReportsACleanStoreAndACorruptBlock() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(32 * CB, 91));
        MemoryBlockDevice cow = new MemoryBlockDevice(256 * CB);
        assertTrue(SharedEngine.check(cow).clean());
        assertNull(SharedEngine.check(cow).header(), "blank");
        SharedEngine e = open(origin, cow);
        e.createSnapshot(null, false);
        write(e.exports().get(""), 0, pattern(8 * CB, 92));
        long root = e.store().read(() -> e.store().tree().root());
        e.close();
        SharedEngine.CheckReport ok = SharedEngine.check(cow);
        assertTrue(ok.clean(), ok.problems().toString());
        assertEquals(8, ok.exceptions());
        byte[] before = cow.snapshot();
        cow.write(root * CB + 30, ByteBuffer.wrap(new byte[] {9, 9}));
        SharedEngine.CheckReport bad = SharedEngine.check(cow);
        assertFalse(bad.clean());
        assertTrue(bad.problems().get(0).contains("chunk " + root), bad.problems().toString());
        byte[] after = cow.snapshot();
        before[(int) root * CB + 30] = 9;
        before[(int) root * CB + 31] = 9;
        assertArrayEquals(before, after, "check writes nothing");
        IOException read = assertThrows(IOException.class, () -> read(open(origin, cow).exports().get("snapshot-0"), 0, CB));
        assertTrue(read.getMessage().contains("chunk " + root), read.getMessage());
    }
}
