package bow.bowmode;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Appends backup entries to the log in block 0 with group commit: writers queue
 * their entries and wait; one of them (the leader) writes everything queued so
 * far with two flushes, and all of them return together.
 *
 * <p>Write order, so that every entry inside the on-disk count is durable with
 * its data and no crash can leave a torn log:
 * <ol>
 *   <li>callers have already written their backup copies;</li>
 *   <li>sectors 1.. of the log block (entries past the on-disk count, so not yet
 *       part of the log), then flush;</li>
 *   <li>sector 0 (header with the new count and sector0, plus the first
 *       entries): a single sector, written atomically; then flush.</li>
 * </ol>
 * A full log block is first committed, then copied to a free block (flushed), and
 * the next sequence starts by rewriting only sector 0: header with count 1 and
 * entry 0 pointing at that copy. Bytes past the count are left as they are.
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

    private final BlockDevice dev;
    private final int bs;
    private final int capacity;
    private final LogBlockAllocator allocator;

    private final Object queueLock = new Object();
    private final ArrayList<LogEntry> queued = new ArrayList<>();
    private long queuedSector0 = -1;
    private long appended;
    private volatile long durable;
    private volatile IOException failure;

    private final ReentrantLock commitLock = new ReentrantLock();
    /** Waiters sleep on it until a commit ends; guards {@code committing}. */
    private final Object signal = new Object();
    /** A leader is committing (set and cleared under {@code signal}). */
    private boolean committing;
    private final LogBlock log;          // guarded by commitLock
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
        this.sequence = initial.sequence();
        this.totalEntries = count;
        for (int i = 0; i < count; i++) backedUpBytes += initial.entry(i).sizeBytes();
    }

    /** Entries a block takes after its entry 0. */
    static long rolloversFor(long plannedEntries, int blockSize) {
        long perBlock = LogBlock.capacity(blockSize) - 1;
        return Math.max(0, (plannedEntries + perBlock - 1) / perBlock - 1);
    }

    /** Queues entries (and a new sector0 when >= 0); returns the ticket to wait for. */
    long append(List<LogEntry> entries, long newSector0) {
        synchronized (queueLock) {
            queued.addAll(entries);
            if (newSector0 >= 0) queuedSector0 = newSector0;
            return ++appended;
        }
    }

    /**
     * Returns once everything queued up to {@code ticket} is on stable storage. Waiters
     * sleep until a commit ends, then all whose tickets it covered return at once; one of
     * the others becomes the next leader and commits everything queued by then. (Waiting
     * on the commit lock instead would keep a writer whose entries are already durable
     * queued behind the next group's flushes, and shrink the groups.)
     */
    void awaitDurable(long ticket) throws IOException {
        boolean interrupted = false;
        try {
            synchronized (signal) {
                while (true) {
                    if (failure != null) throw new DeviceException(Errno.EIO, "checkpoint log write failed earlier: " + failure.getMessage(), failure);
                    if (durable >= ticket) return;
                    if (!committing) {
                        committing = true;   // the leader: commits below, outside the monitor
                        break;
                    }
                    try {
                        signal.wait();
                    } catch (InterruptedException e) {
                        interrupted = true;   // the commit is not abandoned halfway
                    }
                }
            }
            try {
                commitQueued();
            } finally {
                synchronized (signal) {
                    committing = false;
                    signal.notifyAll();
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /** The leader's part: everything queued so far, with two flushes; under the commit lock. */
    private void commitQueued() throws IOException {
        commitLock.lock();
        try {
            if (failure != null) throw new DeviceException(Errno.EIO, "checkpoint log write failed earlier: " + failure.getMessage(), failure);
            List<LogEntry> batch;
            long sector0;
            long upto;
            synchronized (queueLock) {
                batch = new ArrayList<>(queued);
                queued.clear();
                sector0 = queuedSector0;
                queuedSector0 = -1;
                upto = appended;
            }
            try {
                commit(batch, sector0);
            } catch (IOException e) {
                failure = e;
                throw e;
            } catch (Throwable t) {
                // An Error halfway through leaves the in-memory log block untrustworthy.
                IOException e = new IOException("log commit failed: " + t, t);
                failure = e;
                throw e;
            }
            durable = upto;
        } finally {
            commitLock.unlock();
        }
    }

    private void commit(List<LogEntry> batch, long sector0) throws IOException {
        boolean dirtyTail = false;
        for (LogEntry e : batch) {
            if (count == capacity) {
                if (sector0 >= 0) log.setSector0(sector0);
                writeHeaderAndTail(dirtyTail);
                dirtyTail = false;
                rollover();
            }
            log.setEntry(count, e);
            if (LogBlock.HEADER_SIZE + (count + 1) * LogBlock.ENTRY_SIZE > SECTOR) dirtyTail = true;
            count++;
            totalEntries++;
            backedUpBytes += e.sizeBytes();
        }
        if (sector0 >= 0) log.setSector0(sector0);
        writeHeaderAndTail(dirtyTail);
    }

    /** Phase 2 and 3 of the write order: tail sectors, flush, header sector, flush. */
    private void writeHeaderAndTail(boolean dirtyTail) throws IOException {
        if (dirtyTail && bs > SECTOR) {
            dev.write(SECTOR, ByteBuffer.wrap(log.bytes(), SECTOR, bs - SECTOR));
        }
        dev.flush();   // backup copies and tail entries before the header that counts them
        log.setCount(count);
        dev.write(0, ByteBuffer.wrap(log.bytes(), 0, SECTOR));
        dev.flush();
    }

    /** The log block is full and durable: copy it away and start the next sequence. */
    private void rollover() throws IOException {
        Allocation a = allocator.allocate();
        try {
            long dest = a.block();
            byte[] full = log.bytes().clone();
            dev.write(dest * bs, ByteBuffer.wrap(full));
            dev.flush();
            int crc = BowCrc.entryChecksum(0, bs, full, 0, bs);
            sequence++;
            count = 1;
            log.initHeader(LogBlock.MAGIC, bs, 1, (int) sequence, log.sector0());
            log.setEntry(0, new LogEntry(0, dest * (bs / 512), bs, crc));
            dev.write(0, ByteBuffer.wrap(log.bytes(), 0, SECTOR));
            dev.flush();
            totalEntries++;
            backedUpBytes += bs;
        } finally {
            a.release().run();   // the copy is in the log (or the log is dead): others may use the block
        }
    }

    long sequence() { return sequence; }

    int count() { return count; }

    long backedUpBytes() { return backedUpBytes; }

    long totalEntries() { return totalEntries; }

    IOException failure() { return failure; }

    /** Waits for any commit in progress to finish (used before a state change). */
    void quiesce() {
        commitLock.lock();
        commitLock.unlock();
    }

    LogBlock logForCommit() { return log; }
}
