package bow.blockdev;

import com.sun.jna.LastErrorException;
import com.sun.jna.Native;
import com.sun.jna.ptr.LongByReference;

/**
 * The few Linux calls the JDK does not offer: block-device size and discard
 * ioctls, FITRIM, and fallocate for punching holes in image files. Bound with
 * JNA direct mapping; errors come back as {@link LastErrorException}.
 */
public final class LinuxNative {
    public static final int O_RDONLY = 0;
    public static final int O_RDWR = 2;
    public static final int O_CLOEXEC = 0x80000;
    public static final int O_DIRECTORY = 0x10000;
    /** 040000 on x86-64; arm64 swaps it with O_DIRECTORY (0200000). */
    public static final int O_DIRECT = "aarch64".equals(System.getProperty("os.arch")) ? 0x10000 : 0x4000;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;

    /** _IOR(0x12, 114, size_t) */
    public static final long BLKGETSIZE64 = 0x80081272L;
    /** _IO(0x12, 104): logical sector size (int) */
    public static final long BLKSSZGET = 0x1268L;
    /** _IO(0x12, 119) */
    public static final long BLKDISCARD = 0x1277L;
    /** _IOWR('X', 121, struct fstrim_range) */
    public static final long FITRIM = 0xC0185879L;

    public static final int LOCK_EX = 2;
    public static final int LOCK_NB = 4;
    public static final int LOCK_UN = 8;
    public static final int EWOULDBLOCK = 11;
    public static final int EINTR = 4;

    /** sync_file_range: start write-out of dirty pages in the range, do not wait. */
    public static final int SYNC_FILE_RANGE_WRITE = 2;

    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;

    static {
        registerLibc(LinuxNative.class);
    }

    /**
     * Binds the native methods of {@code c} to the C library by its file name ({@code libc.so.6}),
     * which the dynamic loader finds by itself. Unless told otherwise, JNA first builds a library
     * search path, running {@code /sbin/ldconfig -p} to do so (a fork and an exec, tens of
     * milliseconds of every bowd and bowctl start); the C library needs no search path.
     */
    public static void registerLibc(Class<?> c) {
        if (System.getProperty("jna.platform.library.path") == null) System.setProperty("jna.platform.library.path", "");
        Native.register(c, com.sun.jna.Platform.C_LIBRARY_NAME);
    }

    private LinuxNative() {}

    public static native int open(String path, int flags) throws LastErrorException;

    public static native int close(int fd) throws LastErrorException;

    public static native int ioctl(int fd, long request, LongByReference arg) throws LastErrorException;

    public static native int ioctl(int fd, long request, long[] arg) throws LastErrorException;

    public static native int ioctl(int fd, long request, com.sun.jna.ptr.IntByReference arg) throws LastErrorException;

    /** pread(2) into native memory at {@code buf} (an address: direct-buffer I/O without a JDK copy). */
    public static native long pread(int fd, long buf, long count, long offset) throws LastErrorException;

    /** pwrite(2) from native memory at {@code buf}. */
    public static native long pwrite(int fd, long buf, long count, long offset) throws LastErrorException;

    public static final int AT_EMPTY_PATH = 0x1000;
    /** statx mask bit: stx_dio_mem_align and stx_dio_offset_align (Linux 6.1+). */
    public static final int STATX_DIOALIGN = 0x2000;
    /** Offsets in struct statx (256 bytes): stx_mask, stx_dev_major/minor, stx_dio_mem_align, stx_dio_offset_align. */
    public static final int STATX_SIZE = 256, STX_MASK = 0, STX_DEV_MAJOR = 136, STX_DEV_MINOR = 140,
            STX_DIO_MEM_ALIGN = 152, STX_DIO_OFFSET_ALIGN = 156;

    /** statx(2), registered on its own: a C library without it (glibc before 2.28) costs only this call. */
    public static final class Statx {
        static {
            Native.register("c");
        }

        private Statx() {}

        public static native int statx(int dirfd, String path, int flags, int mask, com.sun.jna.Pointer buf) throws LastErrorException;
    }

    public static final int SYNC_FILE_RANGE_WAIT_BEFORE = 1;
    public static final int SYNC_FILE_RANGE_WAIT_AFTER = 4;
    /** pwritev2 flag: this write is synced as with O_DSYNC (its range, then the device's cache). */
    public static final int RWF_DSYNC = 2;
    public static final int ENOSYS = 38;
    public static final int EOPNOTSUPP = 95;
    /** statfs f_type values of the filesystems whose ranged sync still commits the file's metadata whole. */
    public static final long EXT4_SUPER_MAGIC = 0xEF53L, XFS_SUPER_MAGIC = 0x58465342L, TMPFS_MAGIC = 0x01021994L;

    /** pwritev2 (glibc 2.26+) and fstatfs, registered on their own like {@link Statx}. */
    public static final class RangedSync {
        static {
            Native.register(com.sun.jna.Platform.C_LIBRARY_NAME);
        }

        private RangedSync() {}

        /** {@code iov} points at {@code iovcnt} struct iovec {void *base; size_t len}. */
        public static native long pwritev2(int fd, com.sun.jna.Pointer iov, int iovcnt, long offset, int flags) throws LastErrorException;

        /** struct statfs (120 bytes on LP64 Linux); f_type, a long, comes first. */
        public static native int fstatfs(int fd, com.sun.jna.Pointer buf) throws LastErrorException;
    }

    /** BSD lock on the open file description: not dropped when another descriptor of the file is closed. */
    public static native int flock(int fd, int operation) throws LastErrorException;

    public static native int fdatasync(int fd) throws LastErrorException;

    /** Starts (SYNC_FILE_RANGE_WRITE) write-back of a range; makes nothing durable by itself. */
    public static native int sync_file_range(int fd, long offset, long nbytes, int flags) throws LastErrorException;

    public static native int fallocate(int fd, int mode, long offset, long len) throws LastErrorException;

    public static native int getuid();

    public static native int umask(int mask);

    /** struct passwd *; pw_uid is at offset 16 on LP64 glibc (after two pointers). */
    public static native com.sun.jna.Pointer getpwnam(String name);

    /** The uid of a user name, or -1 when unknown. A numeric name is taken as the uid. */
    public static int uidOf(String user) {
        if (user.chars().allMatch(Character::isDigit) && !user.isEmpty()) return Integer.parseInt(user);
        com.sun.jna.Pointer p = getpwnam(user);
        return p == null ? -1 : p.getInt(16);
    }

    /** strerror-like text for an errno, for messages. */
    public static String describe(LastErrorException e) {
        return "errno " + e.getErrorCode() + " (" + e.getMessage() + ")";
    }
}
