package bow.bowmode;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Appends backup entries to the log in block 0, durable before the caller returns,
 * with flushes shared by every writer they cover, one in flight at a time.
 *
 * <p>A writer, under the lock: <em>stages</em> its entries (puts them into the in-memory log
 * block past the header's count: bytes past the count are not part of the log, so the next
 * flush may write them before any header counts them) and takes the next ticket. Then,
 * until a header that counts its ticket is on stable storage, it either waits for the flush
 * in flight or starts one itself (outside the lock).
 * A flush started after ticket t was staged makes t <em>eligible</em> (its backup copies,
 * written before it queued, and its log bytes are on stable storage); the header is then
 * rewritten (sector 0, one atomic sector) to count every eligible ticket and to carry
 * the newest sector0 among them, and a flush started after that write makes them durable.
 *
 * <p>A flush is ranged ({@link BlockDevice#writeDurably}): it rewrites the log block as it
 * stands when the flush starts (header and staged entries; written once per flush, not once
 * per writer) and makes durable only that and what the tickets it makes eligible name (their
 * backups' destinations, the block a new sector0 points at), not the client's data writes,
 * which a full flush would write back too (most of its cost, bench/RESULTS.md). Two flushes
 * in flight could land their sector-0 copies out of order, a header moving backwards under a
 * writer already released: hence one.
 *
 * <p>The invariant, at every crash point: the header on disk never counts an entry, nor
 * names a sector0, whose backup data and log bytes were not on stable storage before that
 * header was written. (Callers write their backup copies, and the block-0 content a new
 * sector0 points at, before they call {@link #commit}.) A lone write costs two flushes,
 * as "data, flush, header, flush"; concurrent writes share them: with one flush at a time,
 * each flush counts (in the header written just before it) what the previous one made
 * durable, and makes durable what was staged while the previous one ran.
 *
 * <p>A full log block is counted whole and made durable first, then copied to a free
 * block (flushed), and the next sequence starts by rewriting only sector 0: header with
 * count 1 and entry 0 pointing at that copy (flushed). Entries that do not fit are
 * staged into the next block (a write's entries may span the two).
 */
final class LogCommitter {
    static final int SECTOR = 512;
    /** Gives a free block for the copy of a full log block (space reserved by the engine). */
    interface LogBlockAllocator {
        Allocation allocate() throws IOException;
    }

    /**
     * A block for a log copy, busy for everyone else until {@code release} runs:
     * a filesystem write to it must not back up bytes that are about to change.
     */
    record Allocation(long block, Runnable release) {}

    /**
     * A staged ticket not yet counted: where its entries end, its sector0 (or -1), its bytes,
     * and the byte ranges a flush must make durable for it ({offset, length} pairs).
     */
    private record Staged(long ticket, int end, long sector0, long bytes, long[] ranges) {}

    /** What a flush in flight will make durable: tickets staged, and counted, when it started. */
    private record Flight(long staged, long counted) {}

    private final BlockDevice dev;
    private final int bs;
    private final int capacity;
    private final LogBlockAllocator allocator;

    private final ReentrantLock lock = new ReentrantLock();
    /** Signalled whenever a flush ends, the header moves or the log fails. */
    private final Condition changed = lock.newCondition();
    /** Signalled on staging while a flush waits for released writers to come back. */
    private final Condition stagedCond = lock.newCondition();
    /** The longest a flush waits for the writers the last one released. */
    static final long MAX_LINGER_NANOS = 1_000_000;
    private boolean lingering;           // lock
    private long flushes;                // flushes ended, rollovers not counted (lock)
    private long lingeredAfter = -1;     // the flush count when the last linger began (lock)
    private long lastFlushNanos;         // lock
    private long releasedAtLastEnd;      // tickets the last flush made durable (lock)
    private long stagedAtLastEnd;        // stagedTicket when the last flush ended (lock)
    private final LogBlock log;                                  // guarded by lock
    private final ArrayDeque<Staged> uncounted = new ArrayDeque<>();   // guarded by lock
    private Flight flight;               // the flush in flight, or null (lock)
    private int staged;                  // log positions in use, counted or not (lock)
    private long stagedTicket;           // the last ticket staged (lock)
    private long eligibleTicket;         // tickets <= it are on stable storage, log bytes and backups (lock)
    private long countedTicket;          // tickets <= it are counted by the header last written (lock)
    private long durableTicket;          // ... by a header on stable storage (lock)
    private volatile IOException failure;
    private volatile int count;
    private volatile long sequence;
    private volatile long backedUpBytes;
    private volatile long totalEntries;

    LogCommitter(BlockDevice dev, LogBlock initial, LogBlockAllocator allocator) {
        this.dev = dev;
        this.log = initial;
        this.bs = (int) initial.blockSize();
        this.capacity = LogBlock.capacity(bs);
        this.allocator = allocator;
        this.count = (int) initial.count();
        this.staged = count;
        this.sequence = initial.sequence();
        this.totalEntries = count;
        for (int i = 0; i < count; i++) backedUpBytes += initial.entry(i).sizeBytes();
    }

    /** Entries a block takes after its entry 0. */
    static long rolloversFor(long plannedEntries, int blockSize) {
        long perBlock = LogBlock.capacity(blockSize) - 1;
        return Math.max(0, (plannedEntries + perBlock - 1) / perBlock - 1);
    }

    /**
     * Logs entries (and a new sector0 when >= 0) whose backup copies (and block-0 content)
     * the caller has already written; returns once a header counting them is on stable
     * storage. Entries that do not fit the block wait for its rollover and go into the next.
     */
    void commit(List<LogEntry> entries, long newSector0) throws IOException {
        boolean interrupted = false;
        lock.lock();
        try {
            int done = 0;
            do {
                checkFailure();
                int n = entries.size() - done;
                if (n > 0 && staged == capacity) {
                    makeRoom();
                    continue;
                }
                n = Math.min(n, capacity - staged);
                boolean last = done + n == entries.size();
                long ticket = stage(entries.subList(done, done + n), last ? newSector0 : -1);
                done += n;
                interrupted |= awaitCounted(ticket);
            } while (done < entries.size());
        } finally {
            lock.unlock();
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    private void checkFailure() throws DeviceException {
        IOException f = failure;
        if (f != null) throw new DeviceException(Errno.EIO, "checkpoint log write failed earlier: " + f.getMessage(), f);
    }

    /** Puts entries past the count, in memory only; under the lock. */
    private long stage(List<LogEntry> entries, long sector0) throws IOException {
        int from = staged;
        long bytes = 0;
        // What the flush must make durable besides sector 0: the backups, the new sector0's block, the tail.
        long[] ranges = new long[2 * entries.size() + 2];
        int r = 0;
        try {
            for (LogEntry e : entries) {
                log.setEntry(staged++, e);
                bytes += e.sizeBytes();
                ranges[r++] = e.destByte();
                ranges[r++] = e.sizeBytes();
            }
            if (sector0 >= 0) {
                ranges[r++] = sector0 * SECTOR;
                ranges[r++] = bs;
            }
            // The entries reach the device with the next flight, which writes the whole log block.
        } catch (Throwable t) {
            throw fail(t);
        }
        long ticket = ++stagedTicket;
        uncounted.add(new Staged(ticket, staged, sector0, bytes, java.util.Arrays.copyOf(ranges, r)));
        if (lingering) stagedCond.signal();
        return ticket;
    }

    /** Returns once a header on stable storage counts {@code ticket}; under the lock. */
    private boolean awaitCounted(long ticket) throws IOException {
        boolean interrupted = false;
        while (true) {
            checkFailure();
            if (durableTicket >= ticket) return interrupted;
            if (countedTicket < eligibleTicket) writeHeader();
            // The flush in flight, covering this ticket or not, or one about to start: wait for it.
            if (flight != null || lingering) {
                changed.awaitUninterruptibly();
            } else if (shouldLinger()) {
                interrupted |= linger();
            } else {
                flushUnlocked();
            }
        }
    }

    /**
     * Before a flush starts: the writers the last flush released usually come back at once
     * with their next first write. Waiting a little for them (at most half a flush, and
     * {@link #MAX_LINGER_NANOS}) lets this flush make their entries durable, instead of the
     * next one: a whole flush less for them to wait. Once per flush.
     */
    private boolean shouldLinger() {
        return flight == null && lingeredAfter != flushes
                && stagedTicket - stagedAtLastEnd < releasedAtLastEnd;
    }

    /** Waits (lock released) until the writers the last flush released are staged again, or a bound. */
    private boolean linger() {
        boolean interrupted = false;
        lingering = true;
        lingeredAfter = flushes;
        long left = Math.min(lastFlushNanos / 2, MAX_LINGER_NANOS);
        try {
            while (stagedTicket - stagedAtLastEnd < releasedAtLastEnd && left > 0 && failure == null) {
                try {
                    left = stagedCond.awaitNanos(left);
                } catch (InterruptedException e) {
                    interrupted = true;   // kept for the caller; no device I/O runs interrupted
                }
            }
        } finally {
            lingering = false;
        }
        return interrupted;
    }

    /** Counts every eligible ticket: sector 0 with the new count and sector0; under the lock. */
    private void writeHeader() throws IOException {
        int newCount = count;
        long sector0 = -1;
        long bytes = 0;
        int entries = 0;
        while (!uncounted.isEmpty() && uncounted.peek().ticket() <= eligibleTicket) {
            Staged st = uncounted.poll();
            entries += st.end() - newCount;
            newCount = st.end();
            if (st.sector0() >= 0) sector0 = st.sector0();
            bytes += st.bytes();
        }
        try {
            if (sector0 >= 0) log.setSector0(sector0);
            log.setCount(newCount);
            dev.write(0, ByteBuffer.wrap(log.bytes(), 0, SECTOR));
        } catch (Throwable t) {
            throw fail(t);
        }
        countedTicket = eligibleTicket;
        count = newCount;
        totalEntries += entries;
        backedUpBytes += bytes;
        changed.signalAll();
    }

    /**
     * One flush, with the lock released while it runs; records what it made durable. It rewrites
     * sector 0 as it is now (the header written last, and every entry staged in it) and syncs the
     * ranges of the tickets it makes eligible: those staged since the last flush started.
     */
    private void flushUnlocked() throws IOException {
        Flight f = new Flight(stagedTicket, countedTicket);
        flight = f;
        // The whole block as it stands: the header (counting only what is already safe) and every
        // entry staged so far. Its entries past the count are not part of the log until a later
        // header counts them, so the block may land torn; sector 0 is one atomic sector.
        byte[] block = log.bytes().clone();
        int n = 0;
        for (Staged st : uncounted) if (st.ticket() > eligibleTicket) n += st.ranges().length / 2;
        long[] offsets = new long[n], lengths = new long[n];
        int k = 0;
        for (Staged st : uncounted) {
            if (st.ticket() <= eligibleTicket) continue;
            for (int i = 0; i < st.ranges().length; i += 2) {
                offsets[k] = st.ranges()[i];
                lengths[k++] = st.ranges()[i + 1];
            }
        }
        Throwable error = null;
        long t0 = System.nanoTime();
        lock.unlock();
        try {
            dev.writeDurably(0, ByteBuffer.wrap(block), offsets, lengths, n);
        } catch (Throwable t) {
            error = t;
        } finally {
            lock.lock();
            flight = null;
            changed.signalAll();
        }
        if (error != null) throw fail(error);
        flushes++;
        lastFlushNanos = System.nanoTime() - t0;
        eligibleTicket = Math.max(eligibleTicket, f.staged());
        releasedAtLastEnd = Math.max(0, f.counted() - durableTicket);
        durableTicket = Math.max(durableTicket, f.counted());
        stagedAtLastEnd = stagedTicket;
    }

    /** The block is full: once all of it is counted and durable, roll over; under the lock. */
    private void makeRoom() throws IOException {
        if (durableTicket < stagedTicket) {
            awaitCounted(stagedTicket);
            return;
        }
        while (flight != null) changed.awaitUninterruptibly();   // nobody flushes mid-rollover
        checkFailure();
        if (staged != capacity) return;
        try {
            rollover();
        } catch (Throwable t) {
            throw fail(t);
        }
        changed.signalAll();
    }

    /** Records the first failure (the in-memory log is no longer trusted) and wakes everyone. */
    private IOException fail(Throwable t) {
        IOException e = t instanceof IOException io ? io : new IOException("log commit failed: " + t, t);
        if (failure == null) failure = e;
        changed.signalAll();
        return e;
    }

    /** The log block is full and durable: copy it away and start the next sequence. */
    private void rollover() throws IOException {
        Allocation a = allocator.allocate();
        try {
            long dest = a.block();
            byte[] full = log.bytes().clone();
            dev.writeDurably(dest * bs, ByteBuffer.wrap(full), new long[0], new long[0], 0);
            int crc = BowCrc.entryChecksum(0, bs, full, 0, bs);
            sequence++;
            log.initHeader(LogBlock.MAGIC, bs, 1, (int) sequence, log.sector0());
            log.setEntry(0, new LogEntry(0, dest * (bs / 512), bs, crc));
            dev.writeDurably(0, ByteBuffer.wrap(log.bytes(), 0, SECTOR), new long[0], new long[0], 0);
            count = 1;
            staged = 1;
            totalEntries++;
            backedUpBytes += bs;
        } finally {
            a.release().run();   // the copy is in the log (or the log is dead): others may use the block
        }
    }

    /** Tickets staged so far (tests: a writer's entries are in the log block, counted or not). */
    long stagedTickets() {
        lock.lock();
        try {
            return stagedTicket;
        } finally {
            lock.unlock();
        }
    }

    long sequence() { return sequence; }

    int count() { return count; }

    long backedUpBytes() { return backedUpBytes; }

    long totalEntries() { return totalEntries; }

    IOException failure() { return failure; }

    /** Waits for any flush in progress to finish (used before a state change). */
    void quiesce() {
        lock.lock();
        try {
            while (flight != null) changed.awaitUninterruptibly();
        } finally {
            lock.unlock();
        }
    }

    LogBlock logForCommit() { return log; }
}
