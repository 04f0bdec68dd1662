package bow.blockdev;

import com.sun.jna.LastErrorException;
import com.sun.jna.ptr.LongByReference;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A regular file (image) or a block device, at the bottom of every stack.
 * Positional I/O through a FileChannel; flush is a data sync (fdatasync). The
 * size of a block device comes from BLKGETSIZE64; discard is BLKDISCARD on a
 * block device and a punched hole on a file.
 *
 * <p>Interrupts: the JDK closes a FileChannel for every thread when a thread is interrupted
 * inside one of its operations. This device hides that: an operation that meets a channel
 * closed by an interrupt (its own or another thread's) reopens the channel on the same open
 * file ({@code /proc/self/fd/N} of the native descriptor, so a rename does not matter) and
 * retries; every operation is positional and so idempotent. The caller's interrupt flag is
 * cleared for the duration of the call and set again before it returns. Only {@link #close()}
 * ends the device. The flush and the lock use the native descriptor, which no interrupt closes.
 *
 * <p>Large requests go to the channel in slices of at most {@link #MAX_SLICE} bytes, so the
 * JDK's per-thread temporary direct buffers (one per heap buffer size in flight) stay small.
 *
 * <p>Direct mode ({@link #open(Path, boolean, boolean)} with {@code direct}, {@code bowd --direct}):
 * the native descriptor is opened with O_DIRECT and reads and writes go through it
 * ({@link DirectIo}: bounce buffers and read-modify-write for unaligned requests), bypassing
 * the page cache; the channel then carries no data, and an interrupt has nothing to close:
 * native calls ignore it, so the descriptor, and O_DIRECT with it, stay as opened (no reopen,
 * which would have to set O_DIRECT again). Flush, discard and the lock are the same.
 */
public final class FileBlockDevice implements BlockDevice {
    /** Largest byte count handed to one channel call. */
    static final int MAX_SLICE = 1 << 20;
    /** Reopen-and-retry rounds before an operation gives up (only an endless interrupt storm gets there). */
    private static final int MAX_RETRIES = 100_000;

    private final Path path;
    private volatile FileChannel channel;
    private final Object reopenLock = new Object();
    private final Set<StandardOpenOption> openOptions;
    private final boolean blockDevice;
    private final boolean readOnly;
    private final long size;
    /** A native descriptor for the lock, flush, ioctls and fallocate; -1 when native calls are unavailable. */
    private final int nativeFd;
    /** Held when native calls are unavailable (the weaker fcntl lock); null otherwise. */
    private final java.nio.channels.FileLock fallbackLock;
    private final AtomicBoolean closed = new AtomicBoolean();
    /** Direct reads and writes under way (see {@link #enter()}). */
    private final java.util.concurrent.atomic.AtomicInteger inFlight = new java.util.concurrent.atomic.AtomicInteger();
    private long reopens;   // guarded by reopenLock
    /** Reads and writes on the O_DIRECT native descriptor; null for buffered I/O through the channel. */
    private final DirectIo direct;
    /** Whether {@link #writeDurably} may sync only the ranges it names; cleared if the kernel refuses. */
    private volatile boolean rangedSync;

    private FileBlockDevice(Path path, FileChannel channel, Set<StandardOpenOption> openOptions, boolean blockDevice,
                            boolean readOnly, long size, int nativeFd, java.nio.channels.FileLock fallbackLock,
                            DirectIo direct) {
        this.path = path;
        this.channel = channel;
        this.openOptions = openOptions;
        this.blockDevice = blockDevice;
        this.readOnly = readOnly;
        this.size = size;
        this.nativeFd = nativeFd;
        this.fallbackLock = fallbackLock;
        this.direct = direct;
        this.rangedSync = rangedSyncSafe(nativeFd, blockDevice);
    }

    public static FileBlockDevice open(Path path, boolean readOnly) throws IOException {
        return open(path, readOnly, false);
    }

    /** Opens with buffered I/O, or with O_DIRECT when {@code direct} (fails with a message naming --direct where refused). */
    public static FileBlockDevice open(Path path, boolean readOnly, boolean direct) throws IOException {
        return open(path, readOnly, direct, 1);
    }

    /** Direct mode with an alignment of at least {@code minAlignment} (tests: the 4 KiB read-modify-write path on a 512-byte disk). */
    static FileBlockDevice openDirect(Path path, int minAlignment) throws IOException {
        return open(path, false, true, minAlignment);
    }

    private static FileBlockDevice open(Path path, boolean readOnly, boolean direct, int minAlignment) throws IOException {
        if (!Files.exists(path)) {
            throw new IOException(path + ": no such file or device");
        }
        boolean isBlock = !Files.isRegularFile(path) && !Files.isDirectory(path);
        Set<StandardOpenOption> opts = readOnly ? Set.of(StandardOpenOption.READ)
                : Set.of(StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileChannel ch = FileChannel.open(path, opts);
        int fd = -1;
        java.nio.channels.FileLock fallback = null;
        long size;
        DirectIo dio = null;
        try {
            try {
                fd = LinuxNative.open(path.toString(), (readOnly ? LinuxNative.O_RDONLY : LinuxNative.O_RDWR) | LinuxNative.O_CLOEXEC
                        | (direct ? LinuxNative.O_DIRECT : 0));
            } catch (LastErrorException e) {
                if (direct && e.getErrorCode() == LinuxNative.EINVAL) throw DirectIo.refused(path, "open with O_DIRECT: " + LinuxNative.describe(e), e);
                if (isBlock || direct) throw new IOException(path + ": cannot open for ioctl: " + e.getMessage(), e);
            } catch (UnsatisfiedLinkError e) {
                if (isBlock || direct) throw new IOException(path + ": cannot open for ioctl" + (direct ? " and --direct" : "") + ": " + e.getMessage(), e);
            }
            if (!readOnly) fallback = lockExclusively(path, ch, fd);
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
            if (direct) {
                dio = new DirectIo(path, fd, Math.max(minAlignment, DirectIo.probeAlignment(path, fd, isBlock)));
                if (size % dio.alignment() != 0) {
                    throw new DeviceException(Errno.EINVAL, "--direct: " + path + " is " + size + " bytes, not a multiple of "
                            + dio.alignment() + " (its O_DIRECT alignment): the last block could not be written");
                }
            }
        } catch (IOException | RuntimeException e) {
            ch.close();
            if (fd >= 0) LinuxNative.close(fd);   // also drops a flock taken on it
            throw e;
        }
        return new FileBlockDevice(path, ch, opts, isBlock, readOnly, size, fd, fallback, dio);
    }

    /**
     * One writer at a time: bowd serving a device and an offline rollback of the same
     * device must never run together. An advisory BSD lock ({@code flock(LOCK_EX|LOCK_NB)})
     * on the whole file or device node, taken on this device's own native descriptor: it
     * belongs to that open file description, so closing any other descriptor of the file in
     * this process (a refused second open, a reader, a reopened channel) does not drop it,
     * unlike a POSIX fcntl lock. It conflicts with a second open in the same process too, and
     * goes away at {@link #close()} or when the process dies. Without native calls, falls
     * back to the channel's fcntl lock (weaker: see above).
     */
    private static java.nio.channels.FileLock lockExclusively(Path path, FileChannel ch, int fd) throws IOException {
        if (fd >= 0) {
            while (true) {
                try {
                    LinuxNative.flock(fd, LinuxNative.LOCK_EX | LinuxNative.LOCK_NB);
                    return null;
                } catch (LastErrorException e) {
                    if (e.getErrorCode() == LinuxNative.EINTR) continue;
                    if (e.getErrorCode() == LinuxNative.EWOULDBLOCK) throw inUse(path);
                    throw new DeviceException(Errno.EIO, path + ": cannot lock: " + LinuxNative.describe(e), e);
                }
            }
        }
        java.nio.channels.FileLock lock;
        try {
            lock = ch.tryLock();
        } catch (java.nio.channels.OverlappingFileLockException e) {
            lock = null;
        }
        if (lock == null) throw inUse(path);
        return lock;
    }

    private static DeviceException inUse(Path path) {
        return new DeviceException(Errno.EPERM, path + " is in use by another writer (is bowd serving it?); stop it first");
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

    /** Whether reads and writes bypass the page cache (O_DIRECT). */
    public boolean isDirect() { return direct != null; }

    /** The offset, length and buffer alignment O_DIRECT needs here (direct mode), else 1. */
    public int directAlignment() { return direct == null ? 1 : direct.alignment(); }

    /** The native descriptor (tests read its open flags from /proc); -1 without one. */
    int nativeFd() { return nativeFd; }

    /** How often the channel was reopened after an interrupt closed it (for tests and diagnostics). */
    public long reopenCount() {
        synchronized (reopenLock) { return reopens; }
    }

    @Override public long size() { return size; }

    /** One channel call, retried on a fresh channel when an interrupt (or async close) closed the one it used. */
    @FunctionalInterface
    private interface ChannelOp<T> {
        T run(FileChannel ch) throws IOException;
    }

    private <T> T io(ChannelOp<T> op) throws IOException {
        // A set flag would make the channel close itself at once; keep it aside and give it back.
        boolean interrupted = Thread.interrupted();
        try {
            for (int attempt = 0; ; attempt++) {
                FileChannel ch = channel;
                try {
                    return op.run(ch);
                } catch (ClosedChannelException e) {
                    // ClosedByInterruptException (this thread was interrupted), AsynchronousCloseException
                    // (another thread's interrupt closed it under us) or ClosedChannelException (already closed).
                    if (Thread.interrupted()) interrupted = true;
                    if (closed.get()) {
                        throw new DeviceException(Errno.EIO, path + " is closed", e);
                    }
                    if (attempt >= MAX_RETRIES) {
                        throw new DeviceException(Errno.EIO, path + ": I/O kept being interrupted (" + attempt + " retries)", e);
                    }
                    reopen(ch);
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /** Replaces {@code seen} by a new channel on the same open file, unless another thread already did. */
    private void reopen(FileChannel seen) throws IOException {
        synchronized (reopenLock) {
            if (closed.get()) throw new DeviceException(Errno.EIO, path + " is closed");
            if (channel != seen && channel.isOpen()) return;
            try {
                channel.close();      // normally closed already; never leak one that is not
            } catch (IOException ignored) {
                // nothing to do: it is being replaced
            }
            Path same = nativeFd >= 0 ? Path.of("/proc/self/fd/" + nativeFd) : path;
            try {
                channel = FileChannel.open(same, openOptions);
            } catch (IOException e) {
                if (same == path) throw e;
                channel = FileChannel.open(path, openOptions);   // no /proc: the path is the next best thing
            }
            reopens++;
        }
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        BlockDevice.checkRange(this, offset, dst.remaining(), false);
        if (direct != null) {
            enter();
            try {
                direct.read(offset, dst);
            } finally {
                inFlight.decrementAndGet();
            }
            return;
        }
        long pos = offset;
        while (dst.hasRemaining()) {
            final int start = dst.position();
            final int n = Math.min(dst.remaining(), MAX_SLICE);
            final long at = pos;
            io(ch -> {
                ByteBuffer part = dst.duplicate();
                part.limit(start + n).position(start);   // a retry reads the whole slice again
                long p = at;
                while (part.hasRemaining()) {
                    int r = ch.read(part, p);
                    if (r < 0) {
                        // A file shorter than its reported size reads as zeros past its end.
                        while (part.hasRemaining()) part.put((byte) 0);
                        break;
                    }
                    p += r;
                }
                return null;
            });
            dst.position(start + n);
            pos += n;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        if (readOnly) throw new DeviceException(Errno.EPERM, path + " is open read-only");
        BlockDevice.checkRange(this, offset, src.remaining(), true);
        if (direct != null) {
            enter();
            try {
                direct.write(offset, src);
            } finally {
                inFlight.decrementAndGet();
            }
            return;
        }
        long pos = offset;
        while (src.hasRemaining()) {
            final int start = src.position();
            final int n = Math.min(src.remaining(), MAX_SLICE);
            final long at = pos;
            io(ch -> {
                ByteBuffer part = src.duplicate();
                part.limit(start + n).position(start);   // positional: writing the slice again is harmless
                long p = at;
                while (part.hasRemaining()) p += ch.write(part, p);
                return null;
            });
            src.position(start + n);
            pos += n;
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

    /** sync_file_range(SYNC_FILE_RANGE_WRITE): the kernel starts writing the range back and returns. */
    @Override
    public void startWriteback(long offset, long length) throws IOException {
        // Direct mode leaves nothing dirty in the page cache to start on.
        if (readOnly || nativeFd < 0 || length <= 0 || closed.get() || direct != null) return;
        try {
            LinuxNative.sync_file_range(nativeFd, offset, length, LinuxNative.SYNC_FILE_RANGE_WRITE);
        } catch (LastErrorException e) {
            // Only a hint: a write-back error shows up again at the flush, which is what counts.
        } catch (UnsatisfiedLinkError e) {
            // no such call: nothing to start
        }
    }

    /**
     * A ranged sync: {@code sync_file_range} writes the named ranges back and waits for them,
     * then the write goes out with {@code RWF_DSYNC}, which writes its own range back and flushes
     * the device's cache; that flush makes the ranges written back before it durable too. The
     * rest of the page cache (data the client has not asked to flush) stays dirty.
     *
     * <p>Only where a ranged sync is as safe as fdatasync for the pages it writes back: a block
     * device, or a file on ext2/3/4, XFS or tmpfs, whose sync commits the file's metadata whole
     * (block allocations anywhere in it), not only the range's. Elsewhere (btrfs logs only the
     * synced range's extents, for one), in direct mode, and if the kernel refuses RWF_DSYNC:
     * the write, then {@link #flush()}.
     */
    @Override
    public void writeDurably(long offset, ByteBuffer src, long[] offsets, long[] lengths, int n) throws IOException {
        if (!rangedSync || direct != null || readOnly) {
            BlockDevice.super.writeDurably(offset, src, offsets, lengths, n);
            return;
        }
        BlockDevice.checkRange(this, offset, src.remaining(), true);
        for (int i = 0; i < n; i++) BlockDevice.checkRange(this, offsets[i], lengths[i], true);
        enter();
        try {
            long[][] runs = coalesce(offsets, lengths, n, SYNC_GAP);
            // The synced write's own write-back takes whole pages: a run inside them needs no call of its own.
            long pageFrom = offset & -PAGE, pageTo = (offset + src.remaining() + PAGE - 1) & -PAGE;
            runs = java.util.Arrays.stream(runs).filter(r -> r[0] < pageFrom || r[1] > pageTo).toArray(long[][]::new);
            for (long[] r : runs) syncRange(r[0], r[1] - r[0], LinuxNative.SYNC_FILE_RANGE_WRITE);
            for (long[] r : runs) {
                syncRange(r[0], r[1] - r[0], LinuxNative.SYNC_FILE_RANGE_WAIT_BEFORE
                        | LinuxNative.SYNC_FILE_RANGE_WRITE | LinuxNative.SYNC_FILE_RANGE_WAIT_AFTER);
            }
            if (!writeDsync(offset, src)) {
                write(offset, src);
                flush();
            }
        } finally {
            inFlight.decrementAndGet();
        }
    }

    /** The smallest page size Linux has; write-back works in whole pages. */
    private static final long PAGE = 4096;
    /**
     * Runs closer than this are synced as one: the pages between are written too if dirty,
     * one sequential write instead of several (backups are placed next to each other, but
     * a flush sees them in the order their writers were staged, not allocated).
     */
    static final long SYNC_GAP = 64 << 10;

    /** Sorted {start, end} runs of the ranges, merged where they overlap or are at most {@code gap} apart. */
    static long[][] coalesce(long[] offsets, long[] lengths, int n, long gap) {
        long[][] rs = new long[n][];
        int k = 0;
        for (int i = 0; i < n; i++) if (lengths[i] > 0) rs[k++] = new long[] {offsets[i], offsets[i] + lengths[i]};
        java.util.Arrays.sort(rs, 0, k, (a, b) -> Long.compare(a[0], b[0]));
        int m = 0;
        for (int i = 0; i < k; i++) {
            if (m > 0 && rs[i][0] <= rs[m - 1][1] + gap) rs[m - 1][1] = Math.max(rs[m - 1][1], rs[i][1]);
            else rs[m++] = rs[i];
        }
        return java.util.Arrays.copyOf(rs, m);
    }

    private void syncRange(long offset, long length, int flags) throws DeviceException {
        while (true) {
            try {
                LinuxNative.sync_file_range(nativeFd, offset, length, flags);
                return;
            } catch (LastErrorException e) {
                if (e.getErrorCode() == LinuxNative.EINTR) continue;
                throw new DeviceException(Errno.EIO, path + ": write-back (sync_file_range) failed: " + LinuxNative.describe(e), e);
            }
        }
    }

    /** pwritev2 with RWF_DSYNC; false, leaving {@code src} as it was, when the kernel does not take the flag. */
    private boolean writeDsync(long offset, ByteBuffer src) throws DeviceException {
        int len = src.remaining();
        if (len == 0) return false;
        com.sun.jna.Memory buf = new com.sun.jna.Memory(len);
        buf.write(0, toArray(src), 0, len);
        com.sun.jna.Memory iov = new com.sun.jna.Memory(16);
        long done = 0;
        while (done < len) {
            iov.setPointer(0, buf.share(done));
            iov.setLong(8, len - done);
            try {
                done += LinuxNative.RangedSync.pwritev2(nativeFd, iov, 1, offset + done, LinuxNative.RWF_DSYNC);
            } catch (LastErrorException e) {
                int err = e.getErrorCode();
                if (err == LinuxNative.EINTR) continue;
                if (done == 0 && (err == LinuxNative.EOPNOTSUPP || err == LinuxNative.ENOSYS || err == LinuxNative.EINVAL)) {
                    rangedSync = false;   // an old kernel: every later call takes the plain path
                    return false;
                }
                throw new DeviceException(Errno.EIO, path + ": synced write (pwritev2 RWF_DSYNC) failed: " + LinuxNative.describe(e), e);
            }
        }
        src.position(src.limit());
        return true;
    }

    private static byte[] toArray(ByteBuffer src) {
        byte[] a = new byte[src.remaining()];
        src.duplicate().get(a);
        return a;
    }

    /** Whether {@link #writeDurably} syncs only the ranges it names (see there). */
    public boolean syncsRanges() { return rangedSync && direct == null && !readOnly; }

    /** A block device, or a file on a filesystem whose ranged sync commits the file's metadata whole. */
    private static boolean rangedSyncSafe(int fd, boolean isBlock) {
        if (fd < 0) return false;
        try {
            if (isBlock) return true;
            com.sun.jna.Memory st = new com.sun.jna.Memory(256);
            LinuxNative.RangedSync.fstatfs(fd, st);
            long type = st.getLong(0);
            return type == LinuxNative.EXT4_SUPER_MAGIC || type == LinuxNative.XFS_SUPER_MAGIC || type == LinuxNative.TMPFS_MAGIC;
        } catch (LastErrorException | UnsatisfiedLinkError e) {
            return false;   // unknown: the full flush is always right
        }
    }

    /**
     * fdatasync on the native descriptor: it was opened with the device, so it sees every
     * write-back error since then (a channel reopened after an interrupt would not see older
     * ones), and no interrupt closes it.
     */
    @Override
    public void flush() throws IOException {
        if (nativeFd < 0) {
            io(ch -> { ch.force(false); return null; });
            return;
        }
        if (closed.get()) throw new DeviceException(Errno.EIO, path + " is closed");
        while (true) {
            try {
                LinuxNative.fdatasync(nativeFd);
                return;
            } catch (LastErrorException e) {
                if (e.getErrorCode() == LinuxNative.EINTR) continue;
                throw new DeviceException(Errno.EIO, path + ": flush (fdatasync) failed: " + LinuxNative.describe(e), e);
            }
        }
    }

    /**
     * Direct I/O uses the bare descriptor number, which the kernel hands out again once it is
     * closed: {@link #close()} waits for the direct requests in flight before closing it.
     */
    private void enter() throws DeviceException {
        inFlight.incrementAndGet();
        if (closed.get()) {
            inFlight.decrementAndGet();
            throw new DeviceException(Errno.EIO, path + " is closed");
        }
    }

    @Override
    public void close() throws IOException {
        if (closed.getAndSet(true)) return;   // the native descriptor must not be closed twice
        try {
            synchronized (reopenLock) {
                if (fallbackLock != null && fallbackLock.isValid()) fallbackLock.release();
                channel.close();
            }
        } finally {
            if (nativeFd >= 0 && drained()) LinuxNative.close(nativeFd);   // drops the flock
        }
    }

    /** Waits (bounded) for direct requests in flight; false if some never ended, and then the descriptor is left open. */
    private boolean drained() {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (inFlight.get() > 0) {
            if (System.nanoTime() > deadline) return false;
            Thread.onSpinWait();
            java.util.concurrent.locks.LockSupport.parkNanos(100_000);
        }
        return true;
    }

    @Override
    public String toString() { return path.toString(); }
}
