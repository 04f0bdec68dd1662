package bow.restore;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A regular image file opened read-only for the offline inspections ({@code bowctl log verify},
 * {@code log dump}): plain FileChannel reads, no native calls. Opening a
 * {@link bow.blockdev.FileBlockDevice} loads JNA (it extracts and links its native library:
 * 0.25-0.5 s of a bowctl call on the project's VM), which a read-only look at a file never
 * needs: no lock, no flush, no ioctl. Block devices and anything written go through
 * FileBlockDevice as before.
 */
public final class ImageFile implements BlockDevice {
    private final Path path;
    private final FileChannel channel;
    private final long size;

    private ImageFile(Path path, FileChannel channel, long size) {
        this.path = path;
        this.channel = channel;
        this.size = size;
    }

    /** Opens {@code path}, which must be a regular file, read-only. */
    public static ImageFile open(Path path) throws IOException {
        if (!Files.exists(path)) throw new IOException(path + ": no such file or device");
        if (!Files.isRegularFile(path)) throw new IOException(path + ": not a regular file");
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ);
        try {
            return new ImageFile(path, ch, ch.size());
        } catch (RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /** The channel, for {@link RunChecksums}' read-only mappings. */
    FileChannel channel() { return channel; }

    @Override public long size() { return size; }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        BlockDevice.checkRange(this, offset, dst.remaining(), false);
        long p = offset;
        while (dst.hasRemaining()) {
            int r = channel.read(dst, p);
            if (r < 0) {
                // A file shorter than its size at open (truncated since) reads as zeros past its end.
                while (dst.hasRemaining()) dst.put((byte) 0);
                break;
            }
            p += r;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        throw new DeviceException(Errno.EPERM, path + " is open read-only");
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        throw new DeviceException(Errno.EPERM, path + " is open read-only");
    }

    /** Nothing is ever written. */
    @Override
    public void flush() {}

    @Override
    public void close() throws IOException {
        channel.close();
    }

    @Override
    public String toString() { return path.toString(); }
}
