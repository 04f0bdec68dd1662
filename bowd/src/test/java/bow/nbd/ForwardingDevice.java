package bow.nbd;

import bow.blockdev.BlockDevice;

import java.io.IOException;
import java.nio.ByteBuffer;

/** Test helper: passes every call to another device; tests override what they intercept. */
class ForwardingDevice implements BlockDevice {
    final BlockDevice inner;

    ForwardingDevice(BlockDevice inner) { this.inner = inner; }

    @Override public long size() { return inner.size(); }
    @Override public void read(long offset, ByteBuffer dst) throws IOException { inner.read(offset, dst); }
    @Override public void write(long offset, ByteBuffer src) throws IOException { inner.write(offset, src); }
    @Override public void discard(long offset, long length) throws IOException { inner.discard(offset, length); }
    @Override public void flush() throws IOException { inner.flush(); }
    @Override public void writeZeroes(long offset, long length) throws IOException { inner.writeZeroes(offset, length); }
}
