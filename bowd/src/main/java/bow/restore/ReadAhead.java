package bow.restore;

import bow.blockdev.BlockDevice;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Reads on a couple of background threads, so that an offline tool checksums or writes one
 * buffer while the next ones are being read (from the page cache that is a memory copy a
 * second core can do; from a cold disk, more than one request in flight).
 *
 * <p>Never interrupts a read: {@link #close()} stops intake and waits for the reads already
 * handed over, so no thread is left inside device I/O when the caller closes the device.
 */
final class ReadAhead implements AutoCloseable {
    private static final long CLOSE_WAIT_NANOS = TimeUnit.SECONDS.toNanos(60);
    private static final AtomicInteger IDS = new AtomicInteger();
    private final BlockDevice dev;
    private final ExecutorService readers;

    ReadAhead(BlockDevice dev, int threads) {
        this.dev = dev;
        int id = IDS.incrementAndGet();
        AtomicInteger n = new AtomicInteger();
        this.readers = Executors.newFixedThreadPool(Math.max(1, threads), r -> {
            // StringBuilder, not "+": bowctl's class-data archive cannot keep what an indy concatenation spins.
            Thread t = new Thread(r, new StringBuilder("read-ahead-").append(id).append('-').append(n.incrementAndGet()).toString());
            t.setDaemon(true);
            return t;
        });
    }

    /** Starts reading {@code dst.remaining()} bytes at {@code offset} into {@code dst} (its position is not moved). */
    Future<?> read(long offset, ByteBuffer dst) {
        ByteBuffer target = dst.duplicate();
        return readers.submit(() -> {
            dev.read(offset, target);
            return null;
        });
    }

    /** Waits for a read and rethrows its failure. An interrupt does not cut the wait short (the read goes on regardless). */
    static void await(Future<?> f) throws IOException {
        if (f == null) return;
        boolean interrupted = false;
        try {
            while (true) {
                try {
                    f.get();
                    return;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (ExecutionException e) {
                    Throwable c = e.getCause();
                    if (c instanceof IOException io) throw io;
                    if (c instanceof RuntimeException r) throw r;
                    if (c instanceof Error err) throw err;
                    throw new IOException(c);
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /**
     * No more reads; returns once those handed over have ended, or after a minute (a device that
     * hangs a read that long has failed; the threads are daemons and only read, so nothing is at
     * risk if the caller then closes the device under them).
     */
    @Override
    public void close() {
        readers.shutdown();
        boolean interrupted = false;
        long deadline = System.nanoTime() + CLOSE_WAIT_NANOS;
        while (true) {
            long left = deadline - System.nanoTime();
            try {
                if (left <= 0 || readers.awaitTermination(left, TimeUnit.NANOSECONDS)) break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }
}
