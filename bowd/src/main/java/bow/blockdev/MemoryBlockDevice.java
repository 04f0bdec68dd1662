package bow.blockdev;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/** A device held in a byte array, for tests and benchmarks. Discard zeroes the range. */
public final class MemoryBlockDevice implements BlockDevice {
    private final byte[] data;

    public MemoryBlockDevice(int size) { this.data = new byte[size]; }

    public MemoryBlockDevice(byte[] initial) { this.data = initial.clone(); }

    @Override public long size() { return data.length; }

    @Override
    public synchronized void read(long offset, ByteBuffer dst) throws IOException {
        BlockDevice.checkRange(this, offset, dst.remaining(), false);
        dst.put(data, (int) offset, dst.remaining());
    }

    @Override
    public synchronized void write(long offset, ByteBuffer src) throws IOException {
        BlockDevice.checkRange(this, offset, src.remaining(), true);
        src.get(data, (int) offset, src.remaining());
    }

    @Override
    public synchronized void discard(long offset, long length) throws IOException {
        BlockDevice.checkRange(this, offset, length, true);
        Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
    }

    @Override public void flush() {}

    /** A copy of the whole content. */
    public synchronized byte[] snapshot() { return data.clone(); }
}
