package bow.blockdev.testing;

import bow.blockdev.BlockDevice;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A test layer that pauses chosen requests, so that a race becomes a deterministic
 * test: arm a gate for an operation and a byte range, start the request that must
 * be caught, wait until it has arrived at the gate, do what must not slip in
 * (or must be made to wait), then release the gate.
 *
 * <p>A gate catches the first matching request after it was armed (or the first
 * {@code count}), and holds it before it reaches the layer below ({@link Phase#BEFORE})
 * or after the layer below completed it ({@link Phase#AFTER}). Every other request
 * passes straight through. Thread model: fully parallel; a held request holds only
 * its own thread.
 */
public final class GateDevice implements BlockDevice {
    public enum Op { READ, WRITE, DISCARD, FLUSH }

    public enum Phase { BEFORE, AFTER }

    /** Which requests a gate catches: byte offset and length (0, 0 for a flush). */
    @FunctionalInterface
    public interface Match {
        boolean test(long offset, long length);

        static Match any() { return (o, l) -> true; }

        /** Requests that overlap [offset, offset + length). */
        static Match overlapping(long offset, long length) {
            return (o, l) -> o < offset + length && offset < o + Math.max(l, 1);
        }
    }

    /** One armed gate. */
    public final class Gate {
        private final Op op;
        private final Phase phase;
        private final Match match;
        private final CountDownLatch arrived;
        private final CountDownLatch released = new CountDownLatch(1);
        private int remaining;

        private Gate(Op op, Phase phase, Match match, int count) {
            this.op = op;
            this.phase = phase;
            this.match = match;
            this.remaining = count;
            this.arrived = new CountDownLatch(count);
        }

        private synchronized boolean claim(Op o, Phase p, long offset, long length) {
            if (remaining == 0 || o != op || p != phase || !match.test(offset, length)) return false;
            remaining--;
            return true;
        }

        /** Waits until every caught request is held at the gate; false on timeout. */
        public boolean awaitArrived(Duration timeout) throws InterruptedException {
            return arrived.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
        }

        /** True once every request this gate was armed for is held at it. */
        public boolean hasArrived() { return arrived.getCount() == 0; }

        /** Lets the held requests (and any later ones it catches) go on; disarms the gate. */
        public void release() {
            synchronized (this) { remaining = 0; }
            released.countDown();
            gates.remove(this);
        }

        private void hold() {
            arrived.countDown();
            try {
                // Bounded so that a broken test cannot hang the build forever.
                if (!released.await(120, TimeUnit.SECONDS)) {
                    throw new IllegalStateException("gate on " + op + " never released");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while held at a gate", e);
            }
        }
    }

    private final BlockDevice inner;
    private final List<Gate> gates = new CopyOnWriteArrayList<>();

    public GateDevice(BlockDevice inner) { this.inner = inner; }

    /** Holds the next request of {@code op} that matches, before it reaches the layer below. */
    public Gate arm(Op op, Match match) { return arm(op, Phase.BEFORE, match, 1); }

    /** Holds the next {@code count} matching requests of {@code op} at {@code phase}. */
    public Gate arm(Op op, Phase phase, Match match, int count) {
        if (count < 1) throw new IllegalArgumentException("count must be at least 1");
        Gate g = new Gate(op, phase, match, count);
        gates.add(g);
        return g;
    }

    private void pass(Op op, Phase phase, long offset, long length) {
        for (Gate g : gates) {
            if (g.claim(op, phase, offset, length)) {
                g.hold();
                return;
            }
        }
    }

    @Override public long size() { return inner.size(); }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        long len = dst.remaining();
        pass(Op.READ, Phase.BEFORE, offset, len);
        inner.read(offset, dst);
        pass(Op.READ, Phase.AFTER, offset, len);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        long len = src.remaining();
        pass(Op.WRITE, Phase.BEFORE, offset, len);
        inner.write(offset, src);
        pass(Op.WRITE, Phase.AFTER, offset, len);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        pass(Op.DISCARD, Phase.BEFORE, offset, length);
        inner.discard(offset, length);
        pass(Op.DISCARD, Phase.AFTER, offset, length);
    }

    @Override
    public void flush() throws IOException {
        pass(Op.FLUSH, Phase.BEFORE, 0, 0);
        inner.flush();
        pass(Op.FLUSH, Phase.AFTER, 0, 0);
    }

    @Override
    public void close() throws IOException {
        for (Gate g : gates) g.release();
        inner.close();
    }

    /** Runs a request on a new thread; the future-like handle reports how it ended. */
    public static Request start(String name, IoAction action) {
        Request r = new Request(action);
        Thread t = new Thread(r::run, name);
        t.setDaemon(true);
        r.thread = t;
        t.start();
        return r;
    }

    @FunctionalInterface
    public interface IoAction { void run() throws Exception; }

    /** A request running on its own thread (see {@link #start}). */
    public static final class Request {
        private final IoAction action;
        private final CountDownLatch done = new CountDownLatch(1);
        private volatile Throwable failure;
        private Thread thread;

        private Request(IoAction action) { this.action = action; }

        private void run() {
            try {
                action.run();
            } catch (Throwable t) {
                failure = t;
            } finally {
                done.countDown();
            }
        }

        /** True if it finished within the timeout. */
        public boolean await(Duration timeout) throws InterruptedException {
            return done.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
        }

        public boolean isDone() { return done.getCount() == 0; }

        /** Waits for the end and rethrows what the request threw, if anything. */
        public void join(Duration timeout) throws Exception {
            if (!await(timeout)) throw new AssertionError(thread.getName() + " did not finish within " + timeout);
            if (failure instanceof Exception e) throw e;
            if (failure instanceof Error e) throw e;
        }

        /** What the request threw, or null (after it finished). */
        public Throwable failure() { return failure; }
    }

}
