package bow.blockdev;

import bow.testing.HostTools;
import com.sun.jna.Library;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link FileBlockDevice#writeDurably} on a real file: the write lands, the ranges it names are
 * written back, and other dirty pages are left dirty (the page cache's own counters, read with
 * cachestat(2), Linux 6.5+).
 */
class FileBlockDeviceRangedSyncTest {
    static final int PAGE = 4096;
    private Path dir;

    @BeforeEach
    void makeDir() throws java.io.IOException {
        Path target = Path.of(System.getProperty("user.dir"), "target");   // not /tmp: it may be tmpfs, whose pages stay "dirty"
        java.nio.file.Files.createDirectories(target);
        dir = java.nio.file.Files.createTempDirectory(target, "ranged-sync");
    }

    @AfterEach
    void removeDir() throws java.io.IOException {
        try (java.util.stream.Stream<Path> s = java.nio.file.Files.walk(dir)) {
            for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) java.nio.file.Files.deleteIfExists(p);
        }
    }

    interface C extends Library {
        C INSTANCE = Native.load("c", C.class);
        long syscall(long number, int fd, Pointer range, Pointer stat, int flags);
    }

    /** nr_dirty + nr_writeback of a range, or -1 when the kernel has no cachestat. */
    static long unwritten(FileBlockDevice dev, long offset, long length) {
        Memory range = new Memory(16);
        range.setLong(0, offset);
        range.setLong(8, length);
        Memory st = new Memory(40);
        st.clear();
        long r = C.INSTANCE.syscall(451, dev.nativeFd(), range, st, 0);   // cachestat, the same number on every architecture
        if (r != 0) return -1;
        return st.getLong(8) + st.getLong(16);
    }

    static ByteBuffer page(int b) {
        byte[] a = new byte[PAGE];
        Arrays.fill(a, (byte) b);
        return ByteBuffer.wrap(a);
    }

    @Test
    void writesTheDataAndRejectsRangesOutsideTheDevice() throws Exception {
        Path img = dir.resolve("a.img");
        FileBlockDevice.createSparse(img, 1 << 20);
        try (FileBlockDevice dev = FileBlockDevice.open(img, false)) {
            dev.write(8 * PAGE, page(0x22));
            ByteBuffer src = ByteBuffer.wrap(new byte[512]);
            Arrays.fill(src.array(), (byte) 0x11);
            dev.writeDurably(100, src, new long[] {8 * PAGE, 9 * PAGE}, new long[] {PAGE, 0}, 2);
            assertFalse(src.hasRemaining(), "the source is consumed");
            ByteBuffer back = ByteBuffer.allocate(512);
            dev.read(100, back);
            assertArrayEquals(src.array(), back.array());
            assertThrows(DeviceException.class,
                    () -> dev.writeDurably(0, ByteBuffer.allocate(512), new long[] {(1 << 20) - PAGE}, new long[] {2 * PAGE}, 1));
            assertThrows(DeviceException.class, () -> dev.writeDurably((1 << 20) - 100, ByteBuffer.allocate(512), new long[0], new long[0], 0));
        }
    }

    @Test
    void onlyTheNamedRangesAndTheWriteAreWrittenBack() throws Exception {
        Path img = dir.resolve("b.img");
        FileBlockDevice.createSparse(img, 4 << 20);
        try (FileBlockDevice dev = FileBlockDevice.open(img, false)) {
            for (long off = 0; off < dev.size(); off += PAGE) dev.write(off, page(1));   // allocated, then clean
            dev.flush();
            if (!dev.syncsRanges() || unwritten(dev, 0, PAGE) < 0) {
                String msg = "needs a file on ext4, XFS or tmpfs and cachestat(2) (Linux 6.5+): " + dir
                        + (dev.syncsRanges() ? " (no cachestat)" : " (filesystem without a ranged sync)");
                if (HostTools.inCi()) fail(msg);
                Assumptions.abort(msg);
            }
            dev.write(16 * PAGE, page(0xd1));          // a client's write: nobody asked to flush it
            dev.write(200 * PAGE, page(0xb1));         // two backups, one run
            dev.write(201 * PAGE, page(0xb2));
            dev.write(300 * PAGE, page(0xb3));         // and one elsewhere
            assertTrue(unwritten(dev, 16 * PAGE, PAGE) > 0, "precondition: the pages are dirty");
            assertTrue(unwritten(dev, 200 * PAGE, 2 * PAGE) > 0);

            dev.writeDurably(0, page(0x10).limit(512), new long[] {300 * PAGE, 200 * PAGE}, new long[] {PAGE, 2 * PAGE}, 2);
            assertEquals(0, unwritten(dev, 200 * PAGE, 2 * PAGE), "named ranges are written back");
            assertEquals(0, unwritten(dev, 300 * PAGE, PAGE));
            assertEquals(0, unwritten(dev, 0, PAGE), "the write itself is written back");
            assertEquals(1, unwritten(dev, 16 * PAGE, PAGE), "a page no range names is still dirty");

            dev.flush();
            assertEquals(0, unwritten(dev, 16 * PAGE, PAGE), "a full flush writes it back");
        }
    }

    @Test
    void coalescesOverlappingAndAdjacentRanges() {
        long[][] runs = FileBlockDevice.coalesce(new long[] {30, 0, 10, 50, 5}, new long[] {10, 10, 5, 0, 2}, 5, 0);
        assertArrayEquals(new long[] {0, 15}, runs[0]);
        assertArrayEquals(new long[] {30, 40}, runs[1]);
        assertEquals(2, runs.length, "empty ranges dropped");
        runs = FileBlockDevice.coalesce(new long[] {30, 0, 100}, new long[] {10, 10, 5}, 3, 20);
        assertEquals(2, runs.length, "a gap of 20 is bridged, one of 60 is not");
        assertArrayEquals(new long[] {0, 40}, runs[0]);
        assertArrayEquals(new long[] {100, 105}, runs[1]);
    }
}
