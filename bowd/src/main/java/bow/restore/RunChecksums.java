package bow.restore;

import bow.blockdev.BlockDevice;
import bow.blockdev.DirectBuffers;
import bow.blockdev.FileBlockDevice;
import bow.bowlog.BowCrc;

import java.io.IOException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The CRC of many runs of device bytes, each from a zero start (crc_le(0, run)), computed on a
 * few threads in ascending device order; the caller folds them into entry checksums with
 * {@link BowCrc#combine}. Runs next to each other on the device are read as one window of up to
 * {@link #WINDOW} bytes, so a cold disk sees large forward reads, several in flight.
 *
 * <p>On an image file ({@link ImageFile}, or a buffered {@link FileBlockDevice}) a window whose
 * pages are all in the page cache ({@link MappedByteBuffer#isLoaded()}, mincore) is checksummed
 * in place through a read-only mapping: no copy from the page cache into a buffer (that copy
 * cost more than the CRC itself here: 550-620 against 320-350 ms of CPU per GiB). Each mapping
 * is unmapped by the thread that used it, once it is done with it. A window not all cached, and
 * anything else (a block device the JDK cannot map, test layers), is read with
 * {@link BlockDevice#read} into page-aligned direct buffers: on a cold disk one 16 MiB pread per
 * window, several in flight, read faster than the mapping's page faults and readahead.
 *
 * <p>Never interrupts a read: a failure waits for the windows already handed over before it is
 * rethrown, and {@link #close()} waits for the threads.
 */
final class RunChecksums implements AutoCloseable {
    /**
     * Largest window: 16 MiB, less in a small heap (direct memory is bounded by it: the threads'
     * read buffers take up to a quarter of it, as much as a restore's batch buffer).
     */
    static final int WINDOW = (int) Math.max(1 << 20, Math.min(16 << 20, Runtime.getRuntime().maxMemory() / 16) & ~((1L << 20) - 1));
    private static final long CLOSE_WAIT_NANOS = TimeUnit.SECONDS.toNanos(60);
    private static final AtomicInteger IDS = new AtomicInteger();
    private static final Method INVOKE_CLEANER;
    private static final Object UNSAFE;

    static {
        Method m = null;
        Object u = null;
        try {
            Class<?> c = Class.forName("sun.misc.Unsafe");
            java.lang.reflect.Field f = c.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            u = f.get(null);
            m = c.getMethod("invokeCleaner", ByteBuffer.class);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // no explicit unmap: the collector unmaps the windows instead
        }
        INVOKE_CLEANER = m;
        UNSAFE = u;
    }

    private final BlockDevice dev;
    private final ExecutorService workers;
    private final ConcurrentLinkedDeque<ByteBuffer> buffers = new ConcurrentLinkedDeque<>();
    /** Windows queued or running that nobody awaited yet; {@link #close()} drops those not started. */
    private final List<Future<?>> outstanding = new ArrayList<>();
    /** Read-only channel for the mappings; null when the device is read through {@link BlockDevice#read}. */
    private final FileChannel channel;
    /** Whether {@link #channel} was opened here (else it is the {@link ImageFile}'s own). */
    private final boolean ownChannel;
    /** {@link #channel} while mapping works; null once a mapping was refused. */
    private volatile FileChannel mapped;

    RunChecksums(BlockDevice dev) {
        this.dev = dev;
        this.ownChannel = !(dev instanceof ImageFile);
        this.channel = dev instanceof ImageFile img ? img.channel() : openForMapping(dev);
        this.mapped = Boolean.getBoolean("bow.restore.noMmap") ? null : channel;
        int threads = Math.max(2, Math.min(4, Runtime.getRuntime().availableProcessors() * 2));
        int id = IDS.incrementAndGet();
        AtomicInteger n = new AtomicInteger();
        this.workers = Executors.newFixedThreadPool(threads, r -> {
            // StringBuilder, not "+": bowctl's class-data archive cannot keep what an indy concatenation spins.
            Thread t = new Thread(r, new StringBuilder("run-checksums-").append(id).append('-').append(n.incrementAndGet()).toString());
            t.setDaemon(true);
            return t;
        });
    }

    private static FileChannel openForMapping(BlockDevice dev) {
        if (!(dev instanceof FileBlockDevice f) || f.isDirect()) return null;
        try {
            return FileChannel.open(f.path(), StandardOpenOption.READ);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** Whether windows are mapped rather than read (tests). */
    boolean mapping() {
        return mapped != null;
    }

    /**
     * crc_le(0, bytes [offset[r], offset[r] + length[r])) for every run r. Runs may be given in any
     * order and may overlap; each is at most {@link #WINDOW} bytes.
     */
    int[] compute(long[] offset, int[] length) throws IOException {
        return submit(offset, length).await();
    }

    /** The checksums of some runs, being computed. */
    final class Pending {
        private final int[] crc;
        private final List<Future<?>> tasks;

        private Pending(int[] crc, List<Future<?>> tasks) {
            this.crc = crc;
            this.tasks = tasks;
        }

        /** Waits for every window (even after a failure: none is left reading) and returns the checksums. */
        int[] await() throws IOException {
            IOException failure = null;
            RuntimeException runtime = null;
            for (Future<?> f : tasks) {
                try {
                    ReadAhead.await(f);
                } catch (IOException e) {
                    if (failure == null) failure = e;
                } catch (RuntimeException e) {
                    if (runtime == null) runtime = e;
                }
            }
            synchronized (outstanding) {
                outstanding.removeAll(tasks);
            }
            if (failure != null) throw failure;
            if (runtime != null) throw runtime;
            return crc;
        }
    }

    /** Starts {@link #compute}: the windows are queued at once, in device order. */
    Pending submit(long[] offset, int[] length) {
        int n = offset.length;
        int[] crc = new int[n];
        List<Future<?>> tasks = new ArrayList<>();
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> Long.compare(offset[a], offset[b]));
        int k = 0;
        while (k < n) {
            // A window: runs in device order while they touch (or overlap) it and it stays within WINDOW bytes.
            long start = offset[order[k]];
            long end = start + length[order[k]];
            int first = k++;
            while (k < n && offset[order[k]] <= end && Math.max(end, offset[order[k]] + length[order[k]]) - start <= WINDOW) {
                end = Math.max(end, offset[order[k]] + length[order[k]]);
                k++;
            }
            int[] runs = new int[k - first];
            for (int j = 0; j < runs.length; j++) runs[j] = order[first + j];
            long s = start, e = end;
            tasks.add(workers.submit(() -> {
                window(s, (int) (e - s), runs, offset, length, crc);
                return null;
            }));
        }
        synchronized (outstanding) {
            outstanding.addAll(tasks);
        }
        return new Pending(crc, tasks);
    }

    private void window(long start, int len, int[] runs, long[] offset, int[] length, int[] crc) throws IOException {
        FileChannel ch = mapped;
        if (ch != null) {
            MappedByteBuffer m = map(ch, start, len);
            if (m != null) {
                boolean cached;
                try {
                    // Resident (mincore): checksum the page cache in place. Not (a cold disk): the pread
                    // below, one large sequential read, was the faster way to get it from the disk.
                    cached = m.isLoaded();
                    if (cached) {
                        for (int r : runs) crc[r] = BowCrc.update(0, m.slice((int) (offset[r] - start), length[r]));
                    }
                } finally {
                    unmap(m);
                }
                if (cached) return;
            }
        }
        ByteBuffer b = buffers.pollFirst();
        if (b == null || b.capacity() < len) b = DirectBuffers.allocate(Math.max(len, Math.min(WINDOW, 1 << 20)));
        try {
            b.clear().limit(len);
            dev.read(start, b);
            for (int r : runs) crc[r] = BowCrc.update(0, b.slice((int) (offset[r] - start), length[r]));
        } finally {
            buffers.addFirst(b);
        }
    }

    /** The window mapped, or null (then it is read instead; a refused mapping turns mapping off). */
    private MappedByteBuffer map(FileChannel ch, long start, int len) {
        try {
            // Never map past the file's end: touching such a page is a SIGBUS, not an exception.
            if (start + len > ch.size()) return null;
            return ch.map(FileChannel.MapMode.READ_ONLY, start, len);
        } catch (IOException | RuntimeException e) {
            mapped = null;   // a block device whose size the JDK does not see, say
            return null;
        }
    }

    private static void unmap(MappedByteBuffer m) {
        if (INVOKE_CLEANER == null) return;
        try {
            INVOKE_CLEANER.invoke(UNSAFE, m);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // left to the collector
        }
    }

    /**
     * Drops the windows not started yet (a verify that failed no longer needs them; cancel(false)
     * never interrupts one that runs), waits for the threads (bounded; they only read) and closes
     * the mapping channel.
     */
    @Override
    public void close() {
        synchronized (outstanding) {
            for (Future<?> f : outstanding) f.cancel(false);
            outstanding.clear();
        }
        workers.shutdown();
        boolean interrupted = false;
        long deadline = System.nanoTime() + CLOSE_WAIT_NANOS;
        while (true) {
            long left = deadline - System.nanoTime();
            try {
                if (left <= 0 || workers.awaitTermination(left, TimeUnit.NANOSECONDS)) break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        mapped = null;
        if (channel != null && ownChannel) {
            try {
                channel.close();
            } catch (IOException ignored) {
                // read-only: nothing to lose
            }
        }
    }
}
