package bow.blockdev;

/** The error classes a block request can fail with; the NBD layer maps them to wire codes. */
public enum Errno {
    EPERM(1), EIO(5), ENOMEM(12), EINVAL(22), ENOSPC(28), EOVERFLOW(75), ENOTSUP(95), ESHUTDOWN(108);

    public final int linuxValue;

    Errno(int linuxValue) { this.linuxValue = linuxValue; }
}
