package bow.blockdev.testing;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Power-cut simulation. Writes since the last flush are volatile: they are visible
 * to reads but sit in a "cache". At a crash an arbitrary subset of them reaches the
 * durable image, each one whole, not at all, or torn (a random subset of its
 * 512-byte sectors); the rest is lost and every later call fails with EIO.
 *
 * <p>A crash happens when {@link #crash(Random)} is called, or automatically when
 * the operation counter armed by {@link #armCrashAfterOps} runs out (so a test can
 * cut power in the middle of a workload, including between two writes of one
 * engine operation).
 *
 * <p>With {@link #setFlushLatency} a flush takes time, as a real one does, and several
 * may be in flight at once: it makes durable exactly the writes that had returned when it
 * was called (later writes stay volatile even if they land while it runs), at its end.
 * {@link #writeDurably} makes only the ranges it names durable.
 */
public final class PowerCutDevice implements BlockDevice {
    public static final int SECTOR = 512;

    private final byte[] durable;
    private final byte[] live;
    private final List<Pending> pending = new ArrayList<>();
    private long opsUntilCrash = Long.MAX_VALUE;
    private Random crashRandom;
    private boolean dead;
    private long flushes;
    private long crashAtFlush = -1;
    private long ops;

    private long flushLatencyMicros;
    private Random latencyRandom;
    private long nextSeq;

    private record Pending(long seq, long offset, byte[] data) {}

    public PowerCutDevice(byte[] initialDurable) {
        this.durable = initialDurable.clone();
        this.live = initialDurable.clone();
    }

    public PowerCutDevice(int size) { this(new byte[size]); }

    /** After {@code n} more mutating operations (write, discard, flush), power fails at the start of the next one. */
    public synchronized void armCrashAfterOps(long n, Random random) {
        this.opsUntilCrash = n;
        this.crashRandom = random;
    }

    /** Power fails at the start of flush number {@code n} (0-based), before it persists anything. */
    public synchronized void armCrashAtFlush(long n, Random random) {
        this.crashAtFlush = n;
        this.crashRandom = random;
    }

    public synchronized long flushCount() { return flushes; }

    public synchronized long opCount() { return ops; }

    public synchronized boolean isDead() { return dead; }

    @Override public long size() { return durable.length; }

    @Override
    public synchronized void read(long offset, ByteBuffer dst) throws IOException {
        checkAlive();
        BlockDevice.checkRange(this, offset, dst.remaining(), false);
        dst.put(live, (int) offset, dst.remaining());
    }

    @Override
    public synchronized void write(long offset, ByteBuffer src) throws IOException {
        tick();
        BlockDevice.checkRange(this, offset, src.remaining(), true);
        byte[] copy = new byte[src.remaining()];
        src.get(copy);
        System.arraycopy(copy, 0, live, (int) offset, copy.length);
        pending.add(new Pending(nextSeq++, offset, copy));
    }

    @Override
    public synchronized void discard(long offset, long length) throws IOException {
        tick();
        BlockDevice.checkRange(this, offset, length, true);
        byte[] zeros = new byte[(int) length];
        System.arraycopy(zeros, 0, live, (int) offset, zeros.length);
        pending.add(new Pending(nextSeq++, offset, zeros));
    }

    /**
     * Flushes take a random 0..{@code maxMicros} and run outside the device's monitor, so
     * that they overlap each other and the writes issued meanwhile.
     */
    public synchronized void setFlushLatency(long maxMicros, Random random) {
        this.flushLatencyMicros = maxMicros;
        this.latencyRandom = random;
    }

    @Override
    public void flush() throws IOException {
        flushThen(this::persistUpTo);
    }

    /**
     * The write (one operation), then a flush of only the named ranges and the write's own (a
     * second operation, counted as a flush, so {@link #armCrashAtFlush} and
     * {@link #armCrashAfterOps} can cut between the two): the pending writes that had returned by
     * then persist where they overlap those ranges, in issue order; the rest of each stays volatile,
     * as a page cache keeps the pages a ranged sync did not name.
     */
    @Override
    public void writeDurably(long offset, ByteBuffer src, long[] offsets, long[] lengths, int n) throws IOException {
        long[][] ranges = merged(offsets, lengths, n, offset, src.remaining());
        write(offset, src);
        flushThen(seq -> persistRanges(seq, ranges));
    }

    /** One flush: counted, maybe the armed power cut, then (after the latency, if set) {@code persist} of the writes returned by its call. */
    private void flushThen(java.util.function.LongConsumer persist) throws IOException {
        long upTo;
        long sleepMicros;
        synchronized (this) {
            tick();
            if (crashAtFlush == flushes) {
                crash(crashRandom);
                throw new DeviceException(Errno.EIO, "simulated power cut at flush " + flushes);
            }
            flushes++;
            if (flushLatencyMicros == 0) {
                persist.accept(Long.MAX_VALUE);
                return;
            }
            upTo = nextSeq - 1;   // the writes that have returned by now
            sleepMicros = (long) (latencyRandom.nextDouble() * flushLatencyMicros);
        }
        try {
            Thread.sleep(sleepMicros / 1000, (int) (sleepMicros % 1000) * 1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (this) {
            checkAlive();   // power failed while it ran: the crash already decided what survived
            persist.accept(upTo);
        }
    }

    /** The ranges and {@code [offset, offset + len)}, as sorted, disjoint {start, end} pairs. */
    private long[][] merged(long[] offsets, long[] lengths, int n, long offset, int len) throws DeviceException {
        List<long[]> rs = new ArrayList<>();
        rs.add(new long[] {offset, offset + len});
        for (int i = 0; i < n; i++) {
            BlockDevice.checkRange(this, offsets[i], lengths[i], true);
            if (lengths[i] > 0) rs.add(new long[] {offsets[i], offsets[i] + lengths[i]});
        }
        rs.sort((a, b) -> Long.compare(a[0], b[0]));
        List<long[]> out = new ArrayList<>();
        for (long[] r : rs) {
            long[] last = out.isEmpty() ? null : out.get(out.size() - 1);
            if (last != null && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
            else out.add(r.clone());
        }
        return out.toArray(new long[0][]);
    }

    /** Persists, in issue order, the parts of the pending writes up to {@code seq} inside the ranges; the rest stays pending. */
    private void persistRanges(long seq, long[][] ranges) {
        List<Pending> keep = new ArrayList<>();
        for (Pending p : pending) {
            if (p.seq() > seq) {
                keep.add(p);
                continue;
            }
            long start = p.offset(), end = start + p.data().length, cur = start;
            for (long[] r : ranges) {
                long s = Math.max(r[0], start), e = Math.min(r[1], end);
                if (s >= e) continue;
                if (s > cur) keep.add(piece(p, cur, s));
                System.arraycopy(p.data(), (int) (s - start), durable, (int) s, (int) (e - s));
                cur = e;
            }
            if (cur < end) keep.add(piece(p, cur, end));
        }
        pending.clear();
        pending.addAll(keep);
    }

    private static Pending piece(Pending p, long from, long to) {
        int at = (int) (from - p.offset());
        return new Pending(p.seq(), from, java.util.Arrays.copyOfRange(p.data(), at, at + (int) (to - from)));
    }

    /** Makes the pending writes numbered up to {@code seq} durable, in issue order. */
    private void persistUpTo(long seq) {
        var it = pending.iterator();
        while (it.hasNext()) {
            Pending p = it.next();
            if (p.seq() > seq) break;
            System.arraycopy(p.data, 0, durable, (int) p.offset, p.data.length);
            it.remove();
        }
    }

    /**
     * Cuts power now: persists a random subset of the unflushed writes (some torn),
     * in issue order, and kills the device.
     */
    public synchronized void crash(Random random) {
        if (dead) return;
        for (Pending p : pending) {
            int choice = random.nextInt(3);
            if (choice == 0) continue;                       // lost
            int sectors = (p.data.length + SECTOR - 1) / SECTOR;
            boolean torn = choice == 2 && sectors > 1;
            for (int s = 0; s < sectors; s++) {
                if (torn && !random.nextBoolean()) continue;
                int from = s * SECTOR;
                int len = Math.min(SECTOR, p.data.length - from);
                System.arraycopy(p.data, from, durable, (int) p.offset + from, len);
            }
        }
        pending.clear();
        dead = true;
    }

    /** What a fresh boot would see: the durable image. */
    public synchronized byte[] durableImage() { return durable.clone(); }

    /** What is visible now, including unflushed writes. */
    public synchronized byte[] liveImage() { return live.clone(); }

    private void tick() throws DeviceException {
        checkAlive();
        ops++;
        if (opsUntilCrash != Long.MAX_VALUE && opsUntilCrash-- <= 0) {
            crash(crashRandom);
            throw new DeviceException(Errno.EIO, "simulated power cut");
        }
    }

    private void checkAlive() throws DeviceException {
        if (dead) throw new DeviceException(Errno.EIO, "simulated power cut: device is gone");
    }
}
