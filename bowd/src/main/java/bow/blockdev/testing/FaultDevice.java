package bow.blockdev.testing;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Supplier;

/**
 * A fault-injection layer: fails chosen requests before they reach the layer
 * below. A rule names an operation, optionally a byte range, and which matching
 * request fails (the n-th, counted from 1, or every one from the n-th on); the
 * failure is EIO unless the rule supplies another throwable (an
 * OutOfMemoryError, say, to test that an Error is handled as carefully as an
 * I/O error). Requests that no rule catches pass through. Thread model: fully
 * parallel; counting is atomic per rule.
 */
public final class FaultDevice implements BlockDevice {
    public enum Op { READ, WRITE, DISCARD, FLUSH }

    /** One armed rule; {@link #hits()} counts the requests it failed. */
    public static final class Rule {
        private final Op op;
        private final long offset, length;
        private final long nth;
        private final boolean sticky;
        private final Supplier<? extends Throwable> failure;
        private long seen;
        private long hits;

        private Rule(Op op, long offset, long length, long nth, boolean sticky, Supplier<? extends Throwable> failure) {
            this.op = op;
            this.offset = offset;
            this.length = length;
            this.nth = nth;
            this.sticky = sticky;
            this.failure = failure;
        }

        private synchronized boolean fires(Op o, long off, long len) {
            if (o != op) return false;
            if (length > 0 && !(off < offset + length && offset < off + Math.max(len, 1))) return false;
            seen++;
            boolean fire = sticky ? seen >= nth : seen == nth;
            if (fire) hits++;
            return fire;
        }

        public synchronized long hits() { return hits; }
    }

    private final BlockDevice inner;
    private final List<Rule> rules = new CopyOnWriteArrayList<>();

    public FaultDevice(BlockDevice inner) { this.inner = inner; }

    /** The {@code n}-th request of {@code op} (from 1) fails with EIO. */
    public Rule failNth(Op op, long n) { return add(new Rule(op, 0, 0, n, false, null)); }

    /** Every request of {@code op} from the {@code n}-th on fails with EIO. */
    public Rule failFrom(Op op, long n) { return add(new Rule(op, 0, 0, n, true, null)); }

    /** Every request of {@code op} that overlaps [offset, offset + length) fails with EIO. */
    public Rule failRange(Op op, long offset, long length) {
        if (length <= 0) throw new IllegalArgumentException("length must be positive");
        return add(new Rule(op, offset, length, 1, true, null));
    }

    /** The {@code n}-th request of {@code op} throws what {@code failure} supplies. */
    public Rule throwNth(Op op, long n, Supplier<? extends Throwable> failure) {
        return add(new Rule(op, 0, 0, n, false, failure));
    }

    private Rule add(Rule r) {
        if (r.nth < 1) throw new IllegalArgumentException("requests are counted from 1");
        rules.add(r);
        return r;
    }

    /** Removes every rule: the device behaves again. */
    public void clear() { rules.clear(); }

    private void check(Op op, long offset, long length) throws IOException {
        for (Rule r : rules) {
            if (!r.fires(op, offset, length)) continue;
            if (r.failure == null) {
                throw new DeviceException(Errno.EIO, "injected " + op + " failure at [" + offset + ", +" + length + ")");
            }
            Throwable t = r.failure.get();
            if (t instanceof IOException io) throw io;
            if (t instanceof RuntimeException re) throw re;
            if (t instanceof Error e) throw e;
            throw new IOException(t);
        }
    }

    @Override public long size() { return inner.size(); }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        check(Op.READ, offset, dst.remaining());
        inner.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        check(Op.WRITE, offset, src.remaining());
        inner.write(offset, src);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        check(Op.DISCARD, offset, length);
        inner.discard(offset, length);
    }

    @Override
    public void flush() throws IOException {
        check(Op.FLUSH, 0, 0);
        inner.flush();
    }

    @Override public void close() throws IOException { inner.close(); }
}
