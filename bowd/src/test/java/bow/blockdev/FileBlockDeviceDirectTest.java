package bow.blockdev;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CyclicBarrier;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code bowd --direct}: FileBlockDevice on an O_DIRECT descriptor. Callers pass any buffer
 * (heap, direct, sliced at odd addresses) at any offset and length; the device bounces and
 * read-modify-writes where O_DIRECT's alignment is not met, and must lose nothing, also
 * when several threads write parts of one aligned block at once.
 *
 * <p>Files live under target/ (not @TempDir: /tmp may be tmpfs, which may refuse O_DIRECT).
 * Where O_DIRECT is refused the tests skip, except in CI where they fail.
 */
class FileBlockDeviceDirectTest {
    private Path dir;

    @BeforeEach
    void makeDir() throws IOException {
        Path target = Path.of(System.getProperty("user.dir"), "target");
        Files.createDirectories(target);
        dir = Files.createTempDirectory(target, "direct-test");
    }

    @AfterEach
    void removeDir() throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }

    /** A new image of {@code size} bytes filled from {@code image} (or sparse), opened direct. */
    private FileBlockDevice image(String name, byte[] image, long size, int minAlignment) throws IOException {
        Path img = dir.resolve(name);
        if (image != null) Files.write(img, image);
        else FileBlockDevice.createSparse(img, size);
        try {
            return minAlignment > 1 ? FileBlockDevice.openDirect(img, minAlignment) : FileBlockDevice.open(img, false, true);
        } catch (DeviceException e) {
            if (!e.getMessage().contains("--direct:")) throw e;
            String msg = "O_DIRECT refused under " + dir + ": " + e.getMessage();
            if ("true".equals(System.getenv("CI"))) fail(msg);
            Assumptions.abort(msg);
            throw e;
        }
    }

    /** A buffer of one of the kinds callers pass, holding {@code data} between position and limit. */
    private static ByteBuffer anyBuffer(Random r, byte[] data) {
        ByteBuffer b = anyEmptyBuffer(r, data.length);
        b.put(data).flip();
        return b.position(0).limit(data.length);
    }

    private static ByteBuffer anyEmptyBuffer(Random r, int len) {
        switch (r.nextInt(4)) {
            case 0: return ByteBuffer.allocate(len);
            case 1: {   // heap, array offset
                int skip = 1 + r.nextInt(100);
                return ByteBuffer.allocate(len + skip).position(skip).slice();
            }
            case 2: return DirectBuffers.allocate(len);   // aligned: passed through when offset and length are
            default: {   // direct at an odd address
                int skip = 1 + r.nextInt(511);
                return ByteBuffer.allocateDirect(len + skip).position(skip).slice();
            }
        }
    }

    private static int length(Random r) {
        switch (r.nextInt(5)) {
            case 0: return 512;
            case 1: return 512 * (1 + r.nextInt(32));
            case 2: return 1 + r.nextInt(9000);
            case 3: return 4096 * (1 + r.nextInt(16));
            default: return 1 + r.nextInt(70000);
        }
    }

    private static long offset(Random r, long size, int len) {
        long off = switch (r.nextInt(3)) {
            case 0 -> 512L * r.nextInt((int) (size / 512));          // any sector, odd ones included
            case 1 -> 4096L * r.nextInt((int) (size / 4096));
            default -> (long) r.nextInt((int) size);
        };
        return Math.min(off, size - len);
    }

    private static void readBack(FileBlockDevice dev, Random r, byte[] model, long off, int len) throws IOException {
        ByteBuffer b = anyEmptyBuffer(r, len);
        int start = b.position();
        dev.read(off, b);
        assertEquals(start + len, b.position(), "a read advances the buffer");
        byte[] got = new byte[len];
        b.position(start);
        b.get(got);
        assertArrayEquals(Arrays.copyOfRange(model, (int) off, (int) off + len), got, "read [" + off + ", +" + len + ")");
    }

    @Test
    void anyBufferOffsetAndLengthReadsWhatWasWritten() throws Exception {
        for (int align : new int[] {1, 4096}) {
            int size = 4 << 20;
            byte[] model = new byte[size];
            long seed = new Random().nextLong();
            Random r = new Random(seed);
            r.nextBytes(model);
            int ops = Integer.getInteger("bow.test.seeds", 300) * 2;
            try (FileBlockDevice dev = image("model-" + align + ".img", model.clone(), size, align)) {
                assertTrue(dev.isDirect());
                int a = dev.directAlignment();
                assertTrue(a >= 512 && a <= 4096 && a >= align, "alignment " + a);
                for (int i = 0; i < ops; i++) {
                    int len = length(r);
                    long off = offset(r, size, len);
                    String ctx = "seed " + seed + " align " + a + " op " + i;
                    if (r.nextBoolean()) {
                        byte[] d = new byte[len];
                        r.nextBytes(d);
                        ByteBuffer b = anyBuffer(r, d);
                        dev.write(off, b);
                        assertFalse(b.hasRemaining(), ctx + ": a write consumes the buffer");
                        System.arraycopy(d, 0, model, (int) off, len);
                        readBack(dev, r, model, off, len);   // read after write
                    } else {
                        readBack(dev, r, model, off, len);
                    }
                    if (i % 50 == 0) dev.flush();
                }
                dev.flush();
            }
            // The file itself, read back without O_DIRECT, is the model: nothing was written around the requests.
            assertArrayEquals(model, Files.readAllBytes(dir.resolve("model-" + align + ".img")), "seed " + seed);
        }
    }

    @Test
    void requestsLargerThanTheBounceBuffer() throws Exception {
        int size = 12 << 20;
        try (FileBlockDevice dev = image("big.img", null, size, 1)) {
            byte[] model = new byte[size];
            Random r = new Random(7);
            // unaligned heap write of 3 MiB + 1234 bytes at an odd byte offset
            byte[] d = new byte[(3 << 20) + 1234];
            r.nextBytes(d);
            dev.write(777, ByteBuffer.wrap(d));
            System.arraycopy(d, 0, model, 777, d.length);
            // aligned direct write of 4 MiB (passed through) and a sector-aligned heap one of 2 MiB + 512
            byte[] e = new byte[4 << 20];
            r.nextBytes(e);
            ByteBuffer de = DirectBuffers.allocate(e.length);
            de.put(e).flip();
            dev.write(5 << 20, de);
            System.arraycopy(e, 0, model, 5 << 20, e.length);
            byte[] f = new byte[(2 << 20) + 512];
            r.nextBytes(f);
            dev.write((9 << 20) + 512, ByteBuffer.wrap(f));
            System.arraycopy(f, 0, model, (9 << 20) + 512, f.length);
            dev.flush();
            ByteBuffer all = ByteBuffer.allocate(size - 3);   // heap, unaligned length, whole device but a tail
            dev.read(1, all);
            assertArrayEquals(Arrays.copyOfRange(model, 1, size - 2), all.array());
            ByteBuffer dall = DirectBuffers.allocate(size);
            dev.read(0, dall);
            dall.flip();
            byte[] got = new byte[size];
            dall.get(got);
            assertArrayEquals(model, got);
        }
    }

    /**
     * Several threads write their own parts of the same few aligned blocks at once: each
     * partial write is a read-modify-write of the whole block, and without the striped lock
     * one thread's write-back of a stale copy would undo another's bytes.
     */
    @Test
    void concurrentPartialWritesIntoOneBlockLoseNothing() throws Exception {
        for (int align : new int[] {1, 4096}) {
            int size = 64 << 10;
            try (FileBlockDevice dev = image("rmw-" + align + ".img", null, size, align)) {
                int a = dev.directAlignment();
                // A part is smaller than the alignment, so every write is partial; 8 parts share each block.
                int part = a / 8;
                int blocks = 2;
                int threads = 8;
                int rounds = Math.max(200, Integer.getInteger("bow.test.seeds", 300) * 2);
                byte[] model = new byte[size];
                ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
                CyclicBarrier start = new CyclicBarrier(threads);
                List<Thread> ts = new ArrayList<>();
                long seed = new Random().nextLong();
                for (int t = 0; t < threads; t++) {
                    final int id = t;
                    ts.add(new Thread(() -> {
                        Random r = new Random(seed + id);
                        byte[] d = new byte[part];
                        try {
                            start.await();
                            for (int i = 0; i < rounds; i++) {
                                int blk = r.nextInt(blocks);
                                long off = (long) blk * a + (long) id * part;
                                r.nextBytes(d);
                                dev.write(off, anyBuffer(r, d));
                                synchronized (model) {   // this thread alone writes these bytes: its last write is the truth
                                    System.arraycopy(d, 0, model, (int) off, part);
                                }
                            }
                        } catch (Throwable e) {
                            errors.add(e);
                        }
                    }));
                }
                ts.forEach(Thread::start);
                for (Thread t : ts) t.join(60_000);
                assertTrue(errors.isEmpty(), () -> errors.peek().toString());
                ByteBuffer back = ByteBuffer.allocate(size);
                dev.read(0, back);
                assertArrayEquals(model, back.array(), "seed " + seed + ", alignment " + a + ", parts of " + part);
            }
        }
    }

    /** An interrupt closes no O_DIRECT descriptor: I/O goes on, nothing is reopened, the flag is kept, and it stays O_DIRECT. */
    @Test
    void interruptsNeitherCloseNorUndoDirectIo() throws Exception {
        int size = 8 << 20;
        try (FileBlockDevice dev = image("intr.img", null, size, 1)) {
            byte[] model = new byte[size];
            ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
            List<Thread> ts = new ArrayList<>();
            int threads = 3;
            long deadline = System.nanoTime() + 1_500_000_000L;
            for (int t = 0; t < threads; t++) {
                final int id = t;
                ts.add(new Thread(() -> {
                    Random r = new Random(id);
                    int region = size / threads & ~4095;
                    try {
                        while (System.nanoTime() < deadline) {
                            int len = r.nextInt(6) == 0 ? (1 << 20) + r.nextInt(1 << 20) : 1 + r.nextInt(20000);
                            long off = (long) id * region + r.nextInt(region - len);
                            byte[] d = new byte[len];
                            r.nextBytes(d);
                            dev.write(off, anyBuffer(r, d));
                            Thread.interrupted();   // the storm may have set it: a kept flag is checked on the main thread
                            synchronized (model) { System.arraycopy(d, 0, model, (int) off, len); }
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
            }
            ts.forEach(Thread::start);
            while (ts.stream().anyMatch(Thread::isAlive)) {
                for (Thread t : ts) t.interrupt();
                Thread.sleep(0, 200_000);
            }
            assertTrue(errors.isEmpty(), () -> errors.peek().toString());
            Thread.currentThread().interrupt();
            ByteBuffer back = ByteBuffer.allocate(size);
            dev.read(0, back);
            assertTrue(Thread.interrupted(), "the caller's interrupt flag is kept");
            assertArrayEquals(model, back.array());
            assertEquals(0, dev.reopenCount(), "no channel was involved");
            String flags = Files.readAllLines(Path.of("/proc/self/fdinfo/" + dev.nativeFd())).stream()
                    .filter(l -> l.startsWith("flags:")).findFirst().orElseThrow();
            int f = Integer.parseInt(flags.substring(6).trim(), 8);
            assertNotEquals(0, f & LinuxNative.O_DIRECT, "still O_DIRECT: " + flags);
        } finally {
            Thread.interrupted();
        }
    }

    @Test
    void discardFlushAndCloseWork() throws Exception {
        int size = 1 << 20;
        byte[] ones = new byte[size];
        Arrays.fill(ones, (byte) 1);
        Path img = dir.resolve("discard.img");
        try (FileBlockDevice dev = image("discard.img", ones, size, 1)) {
            dev.discard(65536, 131072);
            dev.flush();
            ByteBuffer b = ByteBuffer.allocate(4096 + 1000);
            dev.read(65536 - 1000, b);
            for (int i = 0; i < 1000; i++) assertEquals(1, b.get(i));
            for (int i = 1000; i < b.capacity(); i++) assertEquals(0, b.get(i), "punched at " + i);
            dev.close();
            IOException e = assertThrows(IOException.class, () -> dev.read(0, ByteBuffer.allocate(512)));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
        }
        assertEquals(0, Files.readAllBytes(img)[65536 + 4096]);
    }

    @Test
    void aSizeThatIsNotAMultipleOfTheAlignmentIsRefused() throws Exception {
        byte[] odd = new byte[8192 + 512];
        Path img = dir.resolve("odd.img");
        Files.write(img, odd);
        DeviceException e = assertThrows(DeviceException.class, () -> FileBlockDevice.openDirect(img, 4096).close());
        assertTrue(e.getMessage().contains("--direct:"), e.getMessage());
        if (e.getMessage().contains("cannot be used with O_DIRECT")) {
            if ("true".equals(System.getenv("CI"))) fail("O_DIRECT refused: " + e.getMessage());
            Assumptions.abort("O_DIRECT refused: " + e.getMessage());
        }
        assertTrue(e.getMessage().contains("not a multiple of 4096"), e.getMessage());
        // and the refused open left no lock behind
        FileBlockDevice.open(img, false).close();
    }

    /** tmpfs may refuse O_DIRECT (older kernels do): then the error names the flag, else direct I/O works there too. */
    @Test
    void aFilesystemThatRefusesODirectGivesAClearError() throws Exception {
        Path shm = Path.of("/dev/shm");
        Assumptions.assumeTrue(Files.isDirectory(shm) && Files.isWritable(shm), "no /dev/shm");
        Path img = Files.createTempFile(shm, "bow-direct", ".img");
        try {
            Files.write(img, new byte[65536]);
            try (FileBlockDevice dev = FileBlockDevice.open(img, false, true)) {
                byte[] d = new byte[1000];
                new Random(3).nextBytes(d);
                dev.write(100, ByteBuffer.wrap(d));
                ByteBuffer b = ByteBuffer.allocate(1000);
                dev.read(100, b);
                assertArrayEquals(d, b.array());
            } catch (DeviceException e) {
                assertTrue(e.getMessage().contains("--direct: " + img) && e.getMessage().contains("O_DIRECT"), e.getMessage());
                FileBlockDevice.open(img, false).close();   // buffered still opens: the failed open released everything
            }
        } finally {
            Files.deleteIfExists(img);
        }
    }

    /**
     * The bow-mode engine on a direct device: checkpoint, concurrent first writes and
     * rewrites (4 KiB blocks and 512-byte pieces), read-after-write through the engine,
     * then the offline rollback (also direct) gives back the start image outside the free space.
     */
    @Test
    void bowEngineOnADirectDeviceRollsBack() throws Exception {
        int bs = 4096, blocks = 512, size = bs * blocks;
        byte[] start = new byte[size];
        long seed = new Random().nextLong();
        new Random(seed).nextBytes(start);
        FileBlockDevice dev = image("engine.img", start.clone(), size, 1);
        List<long[]> free;
        try (dev) {
            bow.bowmode.BowEngine eng = bow.bowmode.BowEngine.open(dev, "direct", bs);
            eng.discard(256L * bs, 256L * bs);   // the top half is free: room for backups
            eng.startCheckpoint();
            free = eng.freeRangesAtStart();
            byte[] live = eng.size() == size ? start.clone() : null;
            assertNotNull(live);
            int threads = 4;
            ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final int id = t;
                ts.add(new Thread(() -> {
                    Random r = new Random(seed + id);
                    try {
                        for (int i = 0; i < 150; i++) {
                            // each thread its own blocks among the first 128: no two writers overlap, backups fit
                            long blk = id + (long) threads * r.nextInt(128 / threads);
                            int len = r.nextBoolean() ? bs : 512;
                            long off = blk * bs + (len == 512 ? 512L * r.nextInt(8) : 0);
                            byte[] d = new byte[len];
                            r.nextBytes(d);
                            eng.write(off, anyBuffer(r, d));
                            synchronized (live) { System.arraycopy(d, 0, live, (int) off, len); }
                            ByteBuffer back = ByteBuffer.allocate(len);
                            eng.read(off, back);
                            assertArrayEquals(d, back.array(), "read after write at " + off);
                            if (i % 40 == 0) eng.flush();
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
            }
            ts.forEach(Thread::start);
            for (Thread t : ts) t.join(60_000);
            assertTrue(errors.isEmpty(), () -> "seed " + seed + ": " + errors.peek());
            eng.flush();
            ByteBuffer all = ByteBuffer.allocate(256 * bs);
            eng.read(0, all);
            assertArrayEquals(Arrays.copyOf(live, 256 * bs), all.array(), "seed " + seed);
            eng.close();
        }
        try (FileBlockDevice again = FileBlockDevice.open(dir.resolve("engine.img"), false, true)) {
            new bow.restore.Restore(again, "direct").run();
        }
        byte[] after = Files.readAllBytes(dir.resolve("engine.img"));
        for (long[] f : free) Arrays.fill(after, (int) f[0], (int) f[1], (byte) 0);
        byte[] expected = start.clone();
        for (long[] f : free) Arrays.fill(expected, (int) f[0], (int) f[1], (byte) 0);
        assertArrayEquals(expected, after, "rolled back to the start image outside the free space, seed " + seed);
    }
}
