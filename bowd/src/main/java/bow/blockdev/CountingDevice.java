package bow.blockdev;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.LongAdder;

/**
 * Passes every call to the device below and counts them (reads, writes, flushes,
 * discards), so that the daemon can report how many flushes its writes cost
 * ({@code bowctl status}: {@code io_flushes} and the like). Counting is a
 * {@link LongAdder} increment: no lock, no contention between writers.
 */
public final class CountingDevice implements BlockDevice {
    private final BlockDevice dev;
    private final LongAdder reads = new LongAdder();
    private final LongAdder writes = new LongAdder();
    private final LongAdder flushes = new LongAdder();
    private final LongAdder discards = new LongAdder();

    public CountingDevice(BlockDevice dev) { this.dev = dev; }

    public BlockDevice below() { return dev; }

    @Override public long size() { return dev.size(); }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        reads.increment();
        dev.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        writes.increment();
        dev.write(offset, src);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        discards.increment();
        dev.discard(offset, length);
    }

    @Override
    public void flush() throws IOException {
        flushes.increment();
        dev.flush();
    }

    /** Counted as a write and a flush. */
    @Override
    public void writeDurably(long offset, ByteBuffer src, long[] offsets, long[] lengths, int n) throws IOException {
        writes.increment();
        flushes.increment();
        dev.writeDurably(offset, src, offsets, lengths, n);
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        writes.increment();
        dev.writeZeroes(offset, length);
    }

    @Override public void close() throws IOException { dev.close(); }

    public long reads() { return reads.sum(); }
    public long writes() { return writes.sum(); }
    public long flushes() { return flushes.sum(); }
    public long discards() { return discards.sum(); }

    @Override public String toString() { return dev.toString(); }
}
