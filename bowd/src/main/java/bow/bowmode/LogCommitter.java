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
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Appends backup entries to the log in block 0 with a pipelined group commit:
 * writers queue their entries and wait; one of them at a time (the leader) runs a
 * <em>round</em>, and the writers whose entries a round made durable return together.
 *
 * <p>A round is one flush. Before it, the leader
 * <ol>
 *   <li>writes the header (sector 0: new count, sector0) counting the entries
 *       <em>staged</em> by the previous round: their backup copies and their bytes in
 *       the log block were written before the previous round's flush began, so they
 *       are already on stable storage;</li>
 *   <li>stages what has been queued since: its entries go into the log block past the
 *       new count (bytes past the count are not part of the log, so writing them
 *       early is harmless), its tail sectors are written;</li>
 * </ol>
 * then flushes once. That flush makes the header durable (its writers return) and the
 * newly staged entries eligible for the next round's header. The invariant, for every
 * crash point: the on-disk header never counts an entry, nor names a sector0, whose
 * backup data and log bytes were not on stable storage before the header was written.
 * A lone write costs two rounds (two flushes, as a plain "data, flush, header, flush");
 * under load every round counts what the previous one staged, one flush per group.
 * (Callers have written their backup copies before they queue, and a new sector0 is
 * queued only after the block-0 content it points at has been written.)
 *
 * <p>A full log block is counted whole first, then copied to a free block (flushed),
 * and the next sequence starts by rewriting only sector 0: header with count 1 and
 * entry 0 pointing at that copy (flushed). Nothing is staged past a block's capacity.
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
     * One queued entry, or (entry null) a ticket's bare sector0 change. The last item of a
     * ticket carries its sector0 (or -1): applied with the header that counts that item.
     */
    private record Item(LogEntry entry, long ticket, boolean lastOfTicket, long sector0) {}

    private final BlockDevice dev;
    private final int bs;
    private final int capacity;
    private final LogBlockAllocator allocator;

    private final Object queueLock = new Object();
    private final ArrayDeque<Item> queued = new ArrayDeque<>();   // guarded by queueLock
    private long appended;                                         // guarded by queueLock
    private volatile long durable;
    private volatile IOException failure;

    private final ReentrantLock commitLock = new ReentrantLock();
    /** Waiters sleep on it until a round ends; guards {@code committing}. */
    private final Object signal = new Object();
    /** A leader is running a round (set and cleared under {@code signal}). */
    private boolean committing;
    private final LogBlock log;          // guarded by commitLock
    /** Staged by the last round and flushed since: the next header counts them (commitLock). */
    private List<Item> eligible = new ArrayList<>();
    /** Log positions taken by {@code eligible}'s entries: [count, count + eligibleEntries) (commitLock). */
    private int eligibleEntries;
    private volatile int count;
    private volatile long sequence;
    private volatile long backedUpBytes;
    private volatile long totalEntries;
    private volatile long rounds;

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

    /**
     * Queues entries (and a new sector0 when >= 0) whose backup copies (and block-0
     * content) the caller has already written; returns the ticket to wait for.
     */
    long append(List<LogEntry> entries, long newSector0) {
        synchronized (queueLock) {
            long ticket = ++appended;
            if (entries.isEmpty()) {
                queued.add(new Item(null, ticket, true, newSector0));
            } else {
                for (int i = 0; i < entries.size(); i++) {
                    boolean last = i == entries.size() - 1;
                    queued.add(new Item(entries.get(i), ticket, last, last ? newSector0 : -1));
                }
            }
            return ticket;
        }
    }

    /**
     * Returns once everything queued up to {@code ticket} is on stable storage. Waiters
     * sleep until a round ends; those it made durable return at once, and one of the
     * others leads the next round. (Waiting on the commit lock instead would keep a
     * writer whose entries are already durable queued behind the next round.)
     */
    void awaitDurable(long ticket) throws IOException {
        boolean interrupted = false;
        try {
            while (true) {
                synchronized (signal) {
                    while (true) {
                        if (failure != null) throw new DeviceException(Errno.EIO, "checkpoint log write failed earlier: " + failure.getMessage(), failure);
                        if (durable >= ticket) return;
                        if (!committing) {
                            committing = true;   // the leader: runs a round below, outside the monitor
                            break;
                        }
                        try {
                            signal.wait();
                        } catch (InterruptedException e) {
                            interrupted = true;   // the round is not abandoned halfway
                        }
                    }
                }
                try {
                    runRound();
                } finally {
                    synchronized (signal) {
                        committing = false;
                        signal.notifyAll();
                    }
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /** The leader's part: one round, under the commit lock; any failure ends the log. */
    private void runRound() throws IOException {
        commitLock.lock();
        try {
            if (failure != null) throw new DeviceException(Errno.EIO, "checkpoint log write failed earlier: " + failure.getMessage(), failure);
            try {
                round();
            } catch (IOException e) {
                failure = e;
                throw e;
            } catch (Throwable t) {
                // An Error halfway through leaves the in-memory log block untrustworthy.
                IOException e = new IOException("log commit failed: " + t, t);
                failure = e;
                throw e;
            }
        } finally {
            commitLock.unlock();
        }
    }

    private void round() throws IOException {
        if (count == capacity && entryQueued()) {
            // Nothing is staged past capacity, so the full block is counted whole. Only when
            // an entry needs the room: the engine reserves a block per rollover its entries need.
            rollover();
        }
        boolean writeHeader = !eligible.isEmpty();
        int newCount = count + eligibleEntries;
        long newSector0 = -1;
        long newDurable = durable;
        long bytes = 0;
        for (Item it : eligible) {
            if (it.sector0() >= 0) newSector0 = it.sector0();
            newDurable = it.lastOfTicket() ? it.ticket() : it.ticket() - 1;
            if (it.entry() != null) bytes += it.entry().sizeBytes();
        }
        // Stage what was queued since the last round, past the new count, within the block.
        List<Item> fresh = new ArrayList<>();
        int pos = newCount;
        synchronized (queueLock) {
            while (!queued.isEmpty()) {
                Item it = queued.peek();
                if (it.entry() != null && pos == capacity) break;
                queued.poll();
                fresh.add(it);
                if (it.entry() != null) log.setEntry(pos++, it.entry());
            }
        }
        int freshEntries = pos - newCount;
        if (!writeHeader && fresh.isEmpty()) return;
        if (freshEntries > 0 && bs > SECTOR && LogBlock.HEADER_SIZE + pos * LogBlock.ENTRY_SIZE > SECTOR) {
            // The staged entries reach past sector 0 (sectors holding counted entries are rewritten unchanged).
            dev.write(SECTOR, ByteBuffer.wrap(log.bytes(), SECTOR, bs - SECTOR));
        }
        boolean freshInSector0 = freshEntries > 0 && LogBlock.HEADER_SIZE + newCount * LogBlock.ENTRY_SIZE < SECTOR;
        if (writeHeader) {
            if (newSector0 >= 0) log.setSector0(newSector0);
            log.setCount(newCount);
        }
        if (writeHeader || freshInSector0) dev.write(0, ByteBuffer.wrap(log.bytes(), 0, SECTOR));
        dev.flush();
        rounds++;
        if (writeHeader) {
            totalEntries += eligibleEntries;
            backedUpBytes += bytes;
            count = newCount;
        }
        eligible = fresh;
        eligibleEntries = freshEntries;
        if (writeHeader) durable = newDurable;
    }

    private boolean entryQueued() {
        synchronized (queueLock) {
            for (Item it : queued) if (it.entry() != null) return true;
            return false;
        }
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

    /** Rounds (one flush each, rollovers not counted) since this committer started. */
    long rounds() { return rounds; }

    IOException failure() { return failure; }

    /** Waits for any commit in progress to finish (used before a state change). */
    void quiesce() {
        commitLock.lock();
        commitLock.unlock();
    }

    LogBlock logForCommit() { return log; }
}
