package bow.blockdev.testing;

import bow.blockdev.BlockDevice;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.locks.LockSupport;

/**
 * A latency-jitter layer: before each request it yields or sleeps a random short
 * time, so that concurrent requests interleave differently from run to run (the
 * way a real disk's queue reorders them). Thread model: fully parallel.
 */
public final class JitterDevice implements BlockDevice {
    private final BlockDevice inner;
    private final long maxNanos;

    /** Sleeps up to {@code maxMicros} before about a third of the requests, yields before the rest. */
    public JitterDevice(BlockDevice inner, long maxMicros) {
        this.inner = inner;
        this.maxNanos = Math.max(1, maxMicros * 1000);
    }

    private void jitter() {
        ThreadLocalRandom r = ThreadLocalRandom.current();
        if (r.nextInt(3) == 0) LockSupport.parkNanos(r.nextLong(maxNanos));
        else Thread.yield();
    }

    @Override public long size() { return inner.size(); }

    @Override public void read(long offset, ByteBuffer dst) throws IOException { jitter(); inner.read(offset, dst); }

    @Override public void write(long offset, ByteBuffer src) throws IOException { jitter(); inner.write(offset, src); }

    @Override public void discard(long offset, long length) throws IOException { jitter(); inner.discard(offset, length); }

    @Override public void flush() throws IOException { jitter(); inner.flush(); }

    @Override
    public void writeDurably(long offset, ByteBuffer src, long[] offsets, long[] lengths, int n) throws IOException {
        jitter();
        inner.writeDurably(offset, src, offsets, lengths, n);
    }

    @Override public void close() throws IOException { inner.close(); }
}
