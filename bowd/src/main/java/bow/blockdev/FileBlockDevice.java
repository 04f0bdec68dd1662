package bow.blockdev;

import com.sun.jna.LastErrorException;
import com.sun.jna.ptr.LongByReference;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Set;

/**
 * A regular file (image) or a block device, at the bottom of every stack.
 * Positional I/O through a FileChannel; flush is a data sync (fdatasync). The
 * size of a block device comes from BLKGETSIZE64; discard is BLKDISCARD on a
 * block device and a punched hole on a file.
 */
public final class FileBlockDevice implements BlockDevice {
    private final Path path;
    private final FileChannel channel;
    private final boolean blockDevice;
    private final boolean readOnly;
    private final long size;
    /** A native descriptor for the ioctls and fallocate; -1 when native calls are unavailable. */
    private final int nativeFd;
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();

    private FileBlockDevice(Path path, FileChannel channel, boolean blockDevice, boolean readOnly, long size, int nativeFd) {
        this.path = path;
        this.channel = channel;
        this.blockDevice = blockDevice;
        this.readOnly = readOnly;
        this.size = size;
        this.nativeFd = nativeFd;
    }

    public static FileBlockDevice open(Path path, boolean readOnly) throws IOException {
        if (!Files.exists(path)) {
            throw new IOException(path + ": no such file or device");
        }
        boolean isBlock = !Files.isRegularFile(path) && !Files.isDirectory(path);
        Set<StandardOpenOption> opts = readOnly ? Set.of(StandardOpenOption.READ)
                : Set.of(StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileChannel ch = FileChannel.open(path, opts);
        if (!readOnly) lockExclusively(path, ch);
        int fd = -1;
        long size;
        try {
            try {
                fd = LinuxNative.open(path.toString(), (readOnly ? LinuxNative.O_RDONLY : LinuxNative.O_RDWR) | LinuxNative.O_CLOEXEC);
            } catch (LastErrorException | UnsatisfiedLinkError e) {
                if (isBlock) throw new IOException(path + ": cannot open for ioctl: " + e.getMessage(), e);
            }
            if (isBlock) {
                LongByReference out = new LongByReference();
                try {
                    LinuxNative.ioctl(fd, LinuxNative.BLKGETSIZE64, out);
                } catch (LastErrorException e) {
                    throw new IOException(path + ": BLKGETSIZE64 failed: " + LinuxNative.describe(e), e);
                }
                size = out.getValue();
            } else {
                size = ch.size();
            }
        } catch (IOException | RuntimeException e) {
            ch.close();
            if (fd >= 0) LinuxNative.close(fd);
            throw e;
        }
        return new FileBlockDevice(path, ch, isBlock, readOnly, size, fd);
    }

    /**
     * One writer at a time: bowd serving a device and an offline rollback of the same
     * device must never run together. An advisory lock (fcntl) on the whole file
     * or device node, released when the channel closes or the process dies.
     */
    private static void lockExclusively(Path path, FileChannel ch) throws IOException {
        java.nio.channels.FileLock lock;
        try {
            lock = ch.tryLock();
        } catch (java.nio.channels.OverlappingFileLockException e) {
            lock = null;
        }
        if (lock == null) {
            ch.close();
            throw new DeviceException(Errno.EPERM, path + " is in use by another writer (is bowd serving it?); stop it first");
        }
    }

    /** Creates a sparse image file of the given size (fails if it exists). */
    public static void createSparse(Path path, long size) throws IOException {
        if (path.getParent() != null) Files.createDirectories(path.getParent());
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            if (size > 0) {
                ch.write(ByteBuffer.allocate(1), size - 1);
            }
            ch.force(true);
        }
    }

    public Path path() { return path; }

    public boolean isBlockDevice() { return blockDevice; }

    @Override public long size() { return size; }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        BlockDevice.checkRange(this, offset, dst.remaining(), false);
        long pos = offset;
        while (dst.hasRemaining()) {
            int n = channel.read(dst, pos);
            if (n < 0) {
                // A file shorter than its reported size reads as zeros past its end.
                while (dst.hasRemaining()) dst.put((byte) 0);
                return;
            }
            pos += n;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        if (readOnly) throw new DeviceException(Errno.EPERM, path + " is open read-only");
        BlockDevice.checkRange(this, offset, src.remaining(), true);
        long pos = offset;
        while (src.hasRemaining()) {
            pos += channel.write(src, pos);
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        if (readOnly) throw new DeviceException(Errno.EPERM, path + " is open read-only");
        BlockDevice.checkRange(this, offset, length, true);
        if (length == 0 || nativeFd < 0) return;
        try {
            if (blockDevice) {
                LinuxNative.ioctl(nativeFd, LinuxNative.BLKDISCARD, new long[] {offset, length});
            } else {
                LinuxNative.fallocate(nativeFd, LinuxNative.FALLOC_FL_PUNCH_HOLE | LinuxNative.FALLOC_FL_KEEP_SIZE, offset, length);
            }
        } catch (LastErrorException e) {
            // EOPNOTSUPP: the device or filesystem cannot discard; a discard is only a hint.
            if (e.getErrorCode() != 95) {
                throw new DeviceException(Errno.EIO, path + ": discard failed: " + LinuxNative.describe(e), e);
            }
        }
    }

    @Override
    public void flush() throws IOException {
        channel.force(false);
    }

    @Override
    public void close() throws IOException {
        if (closed.getAndSet(true)) return;   // the native descriptor must not be closed twice
        try {
            channel.close();
        } finally {
            if (nativeFd >= 0) LinuxNative.close(nativeFd);
        }
    }

    @Override
    public String toString() { return path.toString(); }
}
