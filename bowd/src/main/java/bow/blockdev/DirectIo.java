package bow.blockdev;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Positional I/O on a descriptor opened with O_DIRECT, for {@link FileBlockDevice} under
 * {@code bowd --direct}: no page cache, so a flush (still fdatasync: the device's volatile
 * cache and the file's block map need it) does not write back unrelated dirty pages.
 *
 * <p>Why pread/pwrite through JNA and not a FileChannel with {@code ExtendedOpenOption.DIRECT}:
 * the JDK aligns everything to the file store's block size (4096 on ext4) even where the
 * kernel takes 512, which would turn every 512-byte log header into a read-modify-write
 * with a device read; and it copies heap buffers through its own temporary buffers. Here the
 * alignment is the kernel's (statx DIOALIGN, BLKSSZGET), aligned direct buffers go to the
 * kernel as they are, and a native call is never closed by a thread interrupt, so the
 * channel's reopen-after-interrupt does not arise on this path (the descriptor stays O_DIRECT
 * for the life of the device).
 *
 * <p>A request whose buffer address, offset or length is not aligned goes through a
 * page-aligned bounce buffer, at most {@link #MAX_BOUNCE} bytes per call. Bounce buffers are
 * reused from a pool shared by all threads, not kept per thread: bowd runs up to a few hundred
 * request threads, and 1 MiB each would break its memory bound (README, "Memory"); in use
 * there are as many as requests being bounced, idle at most {@link #MAX_IDLE_BYTES}. An unaligned write
 * reads the aligned blocks that it covers only in part, patches them and writes them back,
 * under a lock striped by aligned block, so that two non-overlapping partial writes into one
 * block never lose each other; reads take no lock. Requests that overlap each other stay
 * undefined in their order, as on any device.
 */
final class DirectIo {
    /** Largest bounce buffer, and so the largest slice of one bounced request. */
    static final int MAX_BOUNCE = 1 << 20;
    private static final int STRIPES = 1024;   // power of two

    /** Bounce buffers of a request of at most this many bytes come from the small pool. */
    static final int SMALL_BOUNCE = 64 << 10;
    /** Idle bounce buffers kept for reuse, both pools together. */
    static final long MAX_IDLE_BYTES = 16L << 20;
    /** Idle bounce buffers, shared by every direct device (alignment at most a page). */
    private static final java.util.concurrent.ConcurrentLinkedQueue<Bounce> SMALL = new java.util.concurrent.ConcurrentLinkedQueue<>(),
            LARGE = new java.util.concurrent.ConcurrentLinkedQueue<>();
    private static final java.util.concurrent.atomic.AtomicLong idleBytes = new java.util.concurrent.atomic.AtomicLong();

    private final Path path;
    private final int fd;
    private final int align;
    private final ReentrantLock[] stripes = new ReentrantLock[STRIPES];

    DirectIo(Path path, int fd, int align) {
        if (Integer.bitCount(align) != 1 || align > DirectBuffers.PAGE) {
            throw new IllegalArgumentException("direct I/O alignment " + align);
        }
        this.path = path;
        this.fd = fd;
        this.align = align;
        for (int i = 0; i < STRIPES; i++) stripes[i] = new ReentrantLock();
    }

    int alignment() { return align; }

    private static final class Bounce {
        final ByteBuffer buf;
        final long address;
        Bounce(int bytes) {
            buf = DirectBuffers.allocate(bytes);
            address = address(buf);
        }
    }

    /** A bounce buffer of at least {@code bytes} (at most {@link #MAX_BOUNCE}); give it back with {@link #giveBack}. */
    private static Bounce takeBounce(int bytes) {
        boolean small = bytes <= SMALL_BOUNCE;
        Bounce b = (small ? SMALL : LARGE).poll();
        if (b == null) return new Bounce(small ? SMALL_BOUNCE : MAX_BOUNCE);
        idleBytes.addAndGet(-b.buf.capacity());
        return b;
    }

    private static void giveBack(Bounce b) {
        if (idleBytes.addAndGet(b.buf.capacity()) > MAX_IDLE_BYTES) {
            idleBytes.addAndGet(-b.buf.capacity());
            return;   // dropped: the GC frees it
        }
        (b.buf.capacity() == SMALL_BOUNCE ? SMALL : LARGE).offer(b);
    }

    /** Bytes a bounced request of {@code len} at {@code offset} needs per slice. */
    private int bounceBytes(long offset, int len) {
        long from = down(offset);
        return (int) Math.min(up(offset + len) - from, MAX_BOUNCE);
    }

    private static long address(ByteBuffer direct) {
        return Pointer.nativeValue(Native.getDirectBufferPointer(direct));
    }

    private boolean aligned(long v) { return (v & (align - 1)) == 0; }

    private long down(long v) { return v & -(long) align; }

    private long up(long v) { return (v + align - 1) & -(long) align; }

    /** The caller's buffer can go to the kernel as it is. */
    private boolean passThrough(long offset, ByteBuffer b) {
        return b.isDirect() && aligned(offset) && aligned(b.remaining())
                && aligned(address(b) + b.position());
    }

    void read(long offset, ByteBuffer dst) throws IOException {
        int len = dst.remaining();
        if (len == 0) return;
        if (passThrough(offset, dst)) {
            preadFully(offset, address(dst) + dst.position(), len, dst, dst.position());
            dst.position(dst.position() + len);
            return;
        }
        Bounce b = takeBounce(bounceBytes(offset, len));
        try {
            long done = 0;
            while (done < len) {
                long at = offset + done;
                long from = down(at);
                int want = (int) Math.min(len - done, MAX_BOUNCE - (at - from));
                int span = (int) (up(at + want) - from);
                preadFully(from, b.address, span, b.buf, 0);
                ByteBuffer part = b.buf.duplicate();
                part.limit((int) (at - from) + want).position((int) (at - from));
                dst.put(part);
                done += want;
            }
        } finally {
            giveBack(b);
        }
    }

    void write(long offset, ByteBuffer src) throws IOException {
        int len = src.remaining();
        if (len == 0) return;
        if (passThrough(offset, src)) {
            pwriteFully(offset, address(src) + src.position(), len);
            src.position(src.position() + len);
            return;
        }
        Bounce b = takeBounce(bounceBytes(offset, len));
        try {
            writeBounced(offset, src, len, b);
        } finally {
            giveBack(b);
        }
    }

    private void writeBounced(long offset, ByteBuffer src, int len, Bounce b) throws IOException {
        long done = 0;
        while (done < len) {
            long at = offset + done;
            long from = down(at);
            int want = (int) Math.min(len - done, MAX_BOUNCE - (at - from));
            long to = up(at + want);
            int span = (int) (to - from);
            boolean head = at != from, tail = at + want != to;
            ReentrantLock first = null, second = null;
            if (head || tail) {
                // Lock the partly written blocks, lower stripe first (two writers never wait on each other in a cycle).
                int s1 = head ? stripe(from) : stripe(to - align), s2 = tail ? stripe(to - align) : s1;
                first = stripes[Math.min(s1, s2)];
                if (s1 != s2) second = stripes[Math.max(s1, s2)];
                first.lock();
                if (second != null) second.lock();
            }
            try {
                if (head) preadFully(from, b.address, align, b.buf, 0);
                if (tail && (to - align != from || !head)) {
                    preadFully(to - align, b.address + span - align, align, b.buf, span - align);
                }
                ByteBuffer part = b.buf.duplicate();
                part.position((int) (at - from));
                ByteBuffer piece = src.duplicate();
                piece.limit(piece.position() + want);
                part.put(piece);
                pwriteFully(from, b.address, span);
            } finally {
                if (second != null) second.unlock();
                if (first != null) first.unlock();
            }
            src.position(src.position() + want);
            done += want;
        }
    }

    private int stripe(long alignedOffset) {
        long block = alignedOffset / align;
        return (int) ((block * 0x9E3779B97F4A7C15L) >>> 54) & (STRIPES - 1);
    }

    /** Reads {@code len} bytes; past the end of a short file, zeros (into {@code buf} from {@code bufAt}). */
    private void preadFully(long offset, long addr, int len, ByteBuffer buf, int bufAt) throws IOException {
        long done = 0;
        while (done < len) {
            long r;
            try {
                r = LinuxNative.pread(fd, addr + done, len - done, offset + done);
            } catch (LastErrorException e) {
                if (e.getErrorCode() == LinuxNative.EINTR) continue;
                throw failure("read", offset, len, e);
            }
            if (r == 0) {
                for (int i = (int) done; i < len; i++) buf.put(bufAt + i, (byte) 0);
                return;
            }
            done += r;
        }
    }

    private void pwriteFully(long offset, long addr, int len) throws IOException {
        long done = 0;
        while (done < len) {
            long r;
            try {
                r = LinuxNative.pwrite(fd, addr + done, len - done, offset + done);
            } catch (LastErrorException e) {
                if (e.getErrorCode() == LinuxNative.EINTR) continue;
                throw failure("write", offset, len, e);
            }
            if (r <= 0) throw new DeviceException(Errno.EIO, path + ": O_DIRECT write at " + offset + " wrote nothing");
            done += r;
        }
    }

    private DeviceException failure(String what, long offset, int len, LastErrorException e) {
        Errno errno = e.getErrorCode() == LinuxNative.ENOSPC ? Errno.ENOSPC : Errno.EIO;
        return new DeviceException(errno, path + ": O_DIRECT " + what + " [" + offset + ", +" + len + ") failed: "
                + LinuxNative.describe(e), e);
    }

    /**
     * The alignment O_DIRECT needs on {@code fd} (already opened with O_DIRECT): the logical
     * sector size of a block device; for a file what statx reports (STATX_DIOALIGN), else the
     * logical block size of the filesystem's device from sysfs, else a page. Checked with one
     * aligned read, so a descriptor that cannot do direct I/O fails here and not at the first request.
     */
    static int probeAlignment(Path path, int fd, boolean blockDevice) throws IOException {
        int align = 0;
        int devMajor = -1, devMinor = -1;
        if (blockDevice) {
            IntByReference out = new IntByReference();
            try {
                LinuxNative.ioctl(fd, LinuxNative.BLKSSZGET, out);
                align = out.getValue();
            } catch (LastErrorException e) {
                throw new IOException(path + ": BLKSSZGET failed: " + LinuxNative.describe(e), e);
            }
        } else {
            try (Memory stx = new Memory(LinuxNative.STATX_SIZE)) {
                stx.clear();
                LinuxNative.Statx.statx(fd, "", LinuxNative.AT_EMPTY_PATH, LinuxNative.STATX_DIOALIGN, stx);
                if ((stx.getInt(LinuxNative.STX_MASK) & LinuxNative.STATX_DIOALIGN) != 0) {
                    int offsetAlign = stx.getInt(LinuxNative.STX_DIO_OFFSET_ALIGN);
                    if (offsetAlign == 0) throw refused(path, "the filesystem reports no direct I/O support for it", null);
                    align = Math.max(offsetAlign, stx.getInt(LinuxNative.STX_DIO_MEM_ALIGN));
                }
                devMajor = stx.getInt(LinuxNative.STX_DEV_MAJOR);
                devMinor = stx.getInt(LinuxNative.STX_DEV_MINOR);
            } catch (LastErrorException | LinkageError e) {
                // no statx (or no STATX_DIOALIGN): sysfs or a page below
            }
            if (align == 0 && devMajor >= 0) align = sysfsLogicalBlockSize(devMajor, devMinor);
        }
        if (align <= 0 || Integer.bitCount(align) != 1 || align > DirectBuffers.PAGE) align = DirectBuffers.PAGE;
        ByteBuffer probe = DirectBuffers.allocate(align);
        try {
            LinuxNative.pread(fd, address(probe), align, 0);
        } catch (LastErrorException e) {
            if (e.getErrorCode() == LinuxNative.EINVAL) {
                throw refused(path, "an aligned " + align + "-byte read was refused", e);
            }
            throw new IOException(path + ": --direct probe read failed: " + LinuxNative.describe(e), e);
        }
        return align;
    }

    private static int sysfsLogicalBlockSize(int major, int minor) {
        Path dev = Path.of("/sys/dev/block/" + major + ":" + minor);
        for (Path q : new Path[] {dev.resolve("queue/logical_block_size"), dev.resolve("../queue/logical_block_size")}) {
            try {
                return Integer.parseInt(Files.readString(q).trim());
            } catch (IOException | NumberFormatException e) {
                // a partition has its queue on the parent; a virtual filesystem has none
            }
        }
        return 0;
    }

    static DeviceException refused(Path path, String why, Throwable cause) {
        return new DeviceException(Errno.EINVAL, "--direct: " + path + " cannot be used with O_DIRECT (" + why
                + "; tmpfs and some other filesystems refuse it): start without --direct or put the file on another filesystem", cause);
    }
}
