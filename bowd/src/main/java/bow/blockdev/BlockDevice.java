package bow.blockdev;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The one interface every layer implements: the raw file or block device at the
 * bottom, test layers (fault injection, power cut), the mode engines, and what the
 * NBD export serves. Offsets and lengths are in bytes.
 *
 * <p>Buffers: {@code read} fills {@code dst} from its position to its limit and
 * advances the position; {@code write} consumes {@code src} from position to
 * limit. A request that runs past {@link #size()} fails with
 * {@link DeviceException} (EINVAL for reads, ENOSPC for writes).
 *
 * <p>Implementations are safe for concurrent use by several threads.
 */
public interface BlockDevice extends Closeable {

    /** Size in bytes; fixed for the life of the object. */
    long size();

    /** Reads exactly {@code dst.remaining()} bytes at {@code offset}. */
    void read(long offset, ByteBuffer dst) throws IOException;

    /** Writes exactly {@code src.remaining()} bytes at {@code offset}; not durable until {@link #flush()}. */
    void write(long offset, ByteBuffer src) throws IOException;

    /**
     * Tells the device that a byte range no longer holds data. Afterwards the range
     * reads as unspecified content (zeros on most implementations).
     */
    void discard(long offset, long length) throws IOException;

    /**
     * A hint that the range just written will be flushed soon: the device may start writing it
     * back now, so that the coming {@link #flush()} waits for less. Makes nothing durable; the
     * default does nothing.
     */
    default void startWriteback(long offset, long length) throws IOException {}

    /** Makes every write completed before this call durable. */
    void flush() throws IOException;

    /**
     * Writes {@code src} at {@code offset} and returns once that write, and every write that
     * returned before this call and overlaps one of the ranges {@code [offsets[i], offsets[i] +
     * lengths[i])} for {@code i < n}, is on stable storage. Other writes may stay volatile.
     *
     * <p>The commit of a journal needs only its own blocks durable, while {@link #flush()} on a
     * file or block device writes back every dirty page, most of them data the client has not
     * asked to flush (on this project's test disk a 4k random page costs about 0.13 ms of it).
     * The default writes and then flushes everything.
     */
    default void writeDurably(long offset, ByteBuffer src, long[] offsets, long[] lengths, int n) throws IOException {
        write(offset, src);
        flush();
    }

    /** Writes zeros over a range. Default: plain writes in bounded chunks. */
    default void writeZeroes(long offset, long length) throws IOException {
        ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(length, 1 << 20));
        long done = 0;
        while (done < length) {
            int n = (int) Math.min(zeros.capacity(), length - done);
            zeros.clear().limit(n);
            write(offset + done, zeros);
            done += n;
        }
    }

    @Override
    default void close() throws IOException {}

    /** Throws the protocol's error for a request outside [0, size). */
    static void checkRange(BlockDevice dev, long offset, long length, boolean isWrite) throws DeviceException {
        if (offset < 0 || length < 0 || offset > dev.size() || length > dev.size() - offset) {
            throw new DeviceException(isWrite ? Errno.ENOSPC : Errno.EINVAL,
                    "request [" + offset + ", +" + length + ") outside device of " + dev.size() + " bytes");
        }
    }
}
