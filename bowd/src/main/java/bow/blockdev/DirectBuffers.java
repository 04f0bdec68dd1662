package bow.blockdev;

import java.nio.ByteBuffer;

/**
 * Direct buffers that start on a page boundary. ByteBuffer.allocateDirect takes its memory
 * from malloc, 16 bytes into a page; the kernel's copies between the page cache and such a
 * buffer ran 2-4x slower than into a page-aligned one on the project's AMD EPYC VM (1 GiB of
 * cached file through pread: 1.0-1.5 s against 0.25-0.45 s), and O_DIRECT needs the
 * alignment anyway.
 */
public final class DirectBuffers {
    public static final int PAGE = 4096;

    private DirectBuffers() {}

    /** A direct buffer of {@code bytes} (position 0, limit = capacity = bytes) whose first byte is page-aligned. */
    public static ByteBuffer allocate(int bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative size " + bytes);
        // alignedSlice also rounds the end down to a page: allocate whole pages.
        int pages = (int) (((long) bytes + PAGE - 1) / PAGE);
        ByteBuffer raw = ByteBuffer.allocateDirect((pages + 1) * PAGE);
        ByteBuffer aligned = raw.alignedSlice(PAGE);
        return aligned.limit(bytes).slice();
    }
}
