package bow.bowmode;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;
import bow.engine.ModeEngine;
import bow.lifecycle.AtomicFile;
import bow.restore.LogChain;
import bow.restore.ProgressListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The dm-bow engine: backup on write into the filesystem's own free space.
 *
 * <p>State 0 (TRIM) collects discards as FREE ranges and does not pass them down.
 * State 1 (CHECKPOINT) copies the old content of any block that held data when
 * the checkpoint started into a free block, logs the copy in block 0 and makes
 * both durable before the block is overwritten; block 0 itself is redirected to
 * SECTOR0_CURRENT. State 2 (COMMITTED) puts the live block 0 back and passes
 * everything through. Rollback is offline ({@code bowctl rollback}).
 *
 * <p>Thread model: fully parallel; requests to different blocks never wait for
 * each other except in the group commit. What may run at once:
 * <ul>
 *   <li><b>State lock</b> (read/write): every request shares it; a transition
 *       (start, commit) takes it alone, so it sees no request in flight.</li>
 *   <li><b>Map lock</b>: guards the range map, the busy table and the block-0
 *       pointer; held only for planning, never across device I/O.</li>
 *   <li><b>Busy blocks</b> ({@link BusyBlocks}): the one mechanism that decides
 *       whether a state-1 request must wait. A write claims every physical block
 *       it will read or write (its data blocks, backup copies, the moved block 0)
 *       in the plan that decides them, and keeps the claim until its data write
 *       has returned; the log's rollover claims the block the full log block is
 *       copied to until that copy is durable. A request that meets a claim waits
 *       for it to end, holding nothing, and plans again. A discard never waits: it
 *       leaves claimed blocks as they are.</li>
 *   <li><b>Block-0 lock</b>: requests that touch logical block 0, or the physical
 *       block holding the live block 0, hold it for their duration, so a read of
 *       block 0 never sees the pointer move under it. Taken before any claim.</li>
 *   <li><b>Fence</b>: once a backup failed (I/O error or any Error), set before
 *       the failed request's claim ends; every write is refused from then on.</li>
 * </ul>
 * In state 0 writes and discards only change the map (FREE / UNCHANGED) and
 * need no claim; a concurrent discard and write of one block have no defined
 * order there, as in NBD. Log entries go through {@link LogCommitter}'s group
 * commit.
 */
public final class BowEngine implements ModeEngine, BlockDevice {
    private static final Logger log = LoggerFactory.getLogger(BowEngine.class);
    public static final int DEFAULT_BLOCK_SIZE = 4096;
    /** Largest single log entry, in blocks: bounds the copy buffers. */
    static final int MAX_ENTRY_BLOCKS = 256;
    private static final int SECTOR = 512;

    public enum State { TRIM, CHECKPOINT, COMMITTED }

    private final BlockDevice dev;
    private final String deviceName;
    private final int bs;
    private final int sectorsPerBlock;
    private final long blocks;

    private final ReentrantReadWriteLock stateLock = new ReentrantReadWriteLock();
    private volatile State state = State.TRIM;

    private final Object mapLock = new Object();
    private RangeMap map;
    private BusyBlocks busy = new BusyBlocks();
    private long s0c = -1;
    /** True while SECTOR0_CURRENT also holds a logged backup (of the original block 0). */
    private boolean s0cIsBackup;
    private long plannedEntries;
    /** Blocks backed up from checkpointed data / backups moved again, since this engine started (under mapLock). */
    private long originalBackups, movedBackups;
    private long rolloverBlocksUsed;
    private long[] freeAtStart = new long[0];

    private final ReentrantLock block0Lock = new ReentrantLock();
    private volatile LogCommitter committer;
    /** Set when a backup failed: writes are refused from then on. */
    private volatile Throwable broken;
    /** Where the free ranges are kept at checkpoint start, for a resume; null: not kept. */
    private Path freeMapFile;

    private BowEngine(BlockDevice dev, String deviceName, int blockSize) throws IOException {
        if (!LogBlock.isValidBlockSize(blockSize)) {
            throw new IllegalArgumentException("block size " + blockSize + " must be a power of two from 512 to 4096");
        }
        this.dev = dev;
        this.deviceName = deviceName;
        this.bs = blockSize;
        this.sectorsPerBlock = blockSize / SECTOR;
        this.blocks = dev.size() / blockSize;
        if (blocks < 4) {
            throw new IOException(deviceName + ": device of " + dev.size() + " bytes is too small (need at least 4 blocks of " + blockSize + ")");
        }
        this.map = new RangeMap(blocks, RangeType.UNCHANGED);
    }

    /** Opens a device for a new checkpoint; refuses one that still carries a log. */
    public static BowEngine open(BlockDevice dev, String deviceName, int blockSize) throws IOException {
        byte[] head = new byte[SECTOR];
        dev.read(0, ByteBuffer.wrap(head));
        if (LogBlock.looksLikeLog(head)) {
            LogBlock h = new LogBlock(head);
            throw new CheckpointPresentException(deviceName + " still carries a checkpoint log (magic "
                    + LogBlock.magicName(h.magic()) + ", sequence " + h.sequence() + "). Run 'bowctl rollback --device "
                    + deviceName + "' to go back, or 'bowctl commit --device " + deviceName + "' to keep the changes.");
        }
        return new BowEngine(dev, deviceName, blockSize);
    }

    /** Opens a device as it is, even one that carries a log (its block 0 is then served as is). */
    public static BowEngine openIgnoringLog(BlockDevice dev, String deviceName, int blockSize) throws IOException {
        return new BowEngine(dev, deviceName, blockSize);
    }

    /**
     * Continues the checkpoint a device carries, after a restart of the daemon (a
     * reboot during the update). The whole log chain is validated first. What each
     * block is comes back from the log, replayed oldest first: sources are CHANGED,
     * backup copies BACKUP, the header's sector0 is SECTOR0_CURRENT, everything else
     * UNCHANGED. Which blocks were free is not in the log, so the engine starts with
     * no free space and regains it from discards of CHANGED blocks: run fstrim once
     * the filesystem is mounted. Writes that need a backup before then fail with
     * ENOSPC and change nothing.
     */
    public static BowEngine resume(BlockDevice dev, String deviceName) throws IOException {
        return resume(dev, deviceName, null);
    }

    /**
     * As {@link #resume(BlockDevice, String)}, with the free map kept at checkpoint
     * start (see {@link #keepFreeMap}): blocks that were free then and are not
     * named by the log hold nothing the rollback needs, so they are treated as
     * changed (written in place) and become backup space again when trimmed.
     */
    public static BowEngine resume(BlockDevice dev, String deviceName, Path freeMap) throws IOException {
        LogBlock head = LogChain.readHead(dev, deviceName);
        if (head.magic() == LogBlock.MAGIC_RESTORING) {
            throw new CheckpointPresentException(deviceName + ": a rollback of this device was interrupted; finish it with 'bowctl rollback --device "
                    + deviceName + "' before serving the device");
        }
        List<LogEntry> newestFirst = new ArrayList<>();
        LogChain.Summary chain = LogChain.verify(dev, deviceName, new LogChain.Visitor() {
            @Override
            public void entry(LogBlock log, int index, LogEntry entry, long dataBlock, int actualChecksum) {
                newestFirst.add(entry);
            }
        }, ProgressListener.NONE);
        int bs = chain.blockSize();
        BowEngine eng = new BowEngine(dev, deviceName, bs);
        long spb = bs / SECTOR;
        RangeMap map = eng.map;
        for (int i = newestFirst.size() - 1; i >= 0; i--) {
            LogEntry e = newestFirst.get(i);
            long n = e.sizeBytes() / bs;
            long src = e.sourceSector() / spb, dst = e.destSector() / spb;
            if (src != 0) map.set(src, src + n, RangeType.CHANGED);
            map.set(dst, dst + n, RangeType.BACKUP);
        }
        if (freeMap != null) {
            LogEntry first = newestFirst.get(newestFirst.size() - 1);   // sequence 0, entry 0
            long[] runs = FreeMapFile.read(freeMap, new FreeMapFile.Identity(bs, eng.blocks, first.destSector(), first.checksum()));
            if (runs == null) {
                log.warn("no free map at {}: the resumed checkpoint regains space only from changed blocks", freeMap);
            } else {
                for (int i = 0; i < runs.length; i += 2) {
                    List<long[]> untouched = new ArrayList<>();
                    map.forEachIn(runs[i], runs[i + 1], (a, b, t) -> {
                        if (t == RangeType.UNCHANGED) untouched.add(new long[] {a, b});
                    });
                    for (long[] u : untouched) map.set(u[0], u[1], RangeType.CHANGED);
                }
                eng.freeMapFile = freeMap;
            }
        }
        long s0 = head.sector0() / spb;
        eng.s0cIsBackup = map.typeAt(s0) == RangeType.BACKUP;
        map.set(0, 1, RangeType.SECTOR0);
        map.set(s0, s0 + 1, RangeType.SECTOR0_CURRENT);
        eng.s0c = s0;
        eng.rolloverBlocksUsed = chain.newestSequence();
        eng.plannedEntries = chain.entries() - (chain.newestSequence() + 1);
        eng.committer = new LogCommitter(dev, head, eng::allocateLogBlock);
        eng.state = State.CHECKPOINT;
        log.info("checkpoint on {} resumed at log sequence {} ({} entries); run fstrim to give it free space again",
                deviceName, chain.newestSequence(), chain.entries());
        return eng;
    }

    /**
     * Keeps the ranges free at checkpoint start in {@code file} (outside the device),
     * so that {@link #resume} after a restart can use them again.
     */
    public BowEngine keepFreeMap(Path file) {
        this.freeMapFile = file;
        return this;
    }

    public State state() { return state; }

    public int blockSize() { return bs; }

    // ---------------------------------------------------------------- BlockDevice

    @Override public long size() { return blocks * bs; }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        checkRequest(offset, dst.remaining(), false);
        stateLock.readLock().lock();
        try {
            if (state != State.CHECKPOINT || offset >= bs) {
                dev.read(offset, dst);
                return;
            }
            // The part in block 0 comes from SECTOR0_CURRENT.
            int inBlock0 = (int) Math.min(dst.remaining(), bs - offset);
            block0Lock.lock();
            try {
                long s0 = currentS0c();
                ByteBuffer head = dst.slice().limit(inBlock0);
                dev.read(s0 * bs + offset, head);
            } finally {
                block0Lock.unlock();
            }
            dst.position(dst.position() + inBlock0);
            if (dst.hasRemaining()) dev.read(bs, dst);
        } finally {
            stateLock.readLock().unlock();
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        checkRequest(offset, src.remaining(), true);
        if (!src.hasRemaining()) return;
        stateLock.readLock().lock();
        try {
            switch (state) {
                case COMMITTED -> dev.write(offset, src);
                case TRIM -> {
                    synchronized (mapLock) {
                        // Written after a trim: holds data again, so it is no longer free space.
                        long first = offset / bs, last = (offset + src.remaining() - 1) / bs;
                        map.forEachIn(first, last + 1, (s, e, t) -> {
                            if (t == RangeType.FREE) map.set(s, e, RangeType.UNCHANGED);
                        });
                    }
                    dev.write(offset, src);
                }
                case CHECKPOINT -> writeInCheckpoint(offset, src);
            }
        } finally {
            stateLock.readLock().unlock();
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        checkRequest(offset, length, true);
        stateLock.readLock().lock();
        try {
            switch (state) {
                case COMMITTED -> dev.discard(offset, length);
                case TRIM -> {
                    // Whole blocks only, never block 0 (it will hold the log).
                    long first = Math.max(1, (offset + bs - 1) / bs);
                    long end = (offset + length) / bs;
                    if (first < end) {
                        synchronized (mapLock) {
                            map.set(first, end, RangeType.FREE);
                        }
                    }
                }
                case CHECKPOINT -> discardInCheckpoint(offset, length);
            }
        } finally {
            stateLock.readLock().unlock();
        }
    }

    @Override
    public void flush() throws IOException {
        LogCommitter c = committer;
        if (c != null && c.failure() != null) {
            throw new DeviceException(Errno.EIO, "checkpoint log write failed: " + c.failure().getMessage());
        }
        dev.flush();
    }

    /** Waits for requests in flight and flushes; the device itself belongs to the caller. */
    @Override
    public void close() throws IOException {
        stateLock.writeLock().lock();
        try {
            dev.flush();
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    /**
     * Discards are never passed down while a checkpoint exists. An UNCHANGED or
     * BACKUP block keeps its content and type, so nothing needs backing up. A
     * CHANGED block that the filesystem no longer uses holds nothing anyone needs
     * (its old content, if any, is already backed up): it becomes free space for
     * backups. That is also how a resumed checkpoint finds space again.
     */
    private void discardInCheckpoint(long offset, long length) {
        long first = Math.max(1, (offset + bs - 1) / bs);
        long end = (offset + length) / bs;
        if (first >= end) return;
        synchronized (mapLock) {
            List<long[]> changed = new ArrayList<>();
            map.forEachOfTypeIn(first, end, RangeType.CHANGED, (s, e, t) -> changed.add(new long[] {s, e}));
            // A block some request is using stays as it is (its write may still land).
            List<long[]> unclaimed = new ArrayList<>();
            for (long[] run : changed) busy.forEachUnclaimed(run[0], run[1], (s, e, t) -> unclaimed.add(new long[] {s, e}));
            for (long[] run : unclaimed) map.set(run[0], run[1], RangeType.FREE);
        }
    }

    private void checkRequest(long offset, long length, boolean isWrite) throws DeviceException {
        if (offset % SECTOR != 0 || length % SECTOR != 0) {
            throw new DeviceException(Errno.EINVAL, "request [" + offset + ", +" + length + ") is not aligned to 512 bytes");
        }
        BlockDevice.checkRange(this, offset, length, isWrite);
    }

    private long currentS0c() {
        synchronized (mapLock) {
            return s0c;
        }
    }

    // ---------------------------------------------------------------- state 1 writes

    /** A copy of {@code blocks} blocks from {@code from} to {@code to}; logged unless {@code logged} is false. */
    private record Copy(long from, long to, int blocks, boolean logged) {}

    /** What one write must do before its data may land. */
    private final class Plan {
        final List<Copy> copies = new ArrayList<>();
        final List<long[]> undo = new ArrayList<>();     // {from, to, oldType}
        /** Every physical block this write reads or writes; set last, with the map changes. */
        BusyBlocks.Claim claim;
        long newSector0 = -1;
        /** Blocks of checkpointed data this write backs up, and backups it has to move (the filesystem wrote over them). */
        long originalBlocks, movedBlocks;
        /** For a write into block 0 while SECTOR0_CURRENT still holds the backup: move it here. */
        long block0MoveFrom = -1, block0MoveTo = -1;
        int entries;

        void set(long from, long to, RangeType t) {
            map.forEachIn(from, to, (s, e, old) -> undo.add(new long[] {s, e, old.ordinal()}));
            map.set(from, to, t);
        }

        void rollback() {
            for (int i = undo.size() - 1; i >= 0; i--) {
                long[] u = undo.get(i);
                map.set(u[0], u[1], RangeType.VALUES[(int) u[2]]);
            }
        }

        /**
         * Takes up to {@code want} free blocks, contiguous, from the top of the highest free run;
         * null when none is free. Filesystems allocate from low addresses (ext4 fills block
         * groups from the front), so backups kept high are rarely written over and moved again.
         */
        long[] allocate(long want) {
            long f = map.lastFree();
            if (f < 0) return null;
            long end = map.runEnd(f);
            long start = Math.max(f, end - want);
            set(start, end, RangeType.BACKUP);
            return new long[] {start, end - start};
        }
    }

    private void checkNotFenced() throws DeviceException {
        Throwable b = broken;
        if (b != null) {
            throw new DeviceException(Errno.EIO, "writes refused: an earlier backup failed (" + describe(b) + ")");
        }
    }

    private static String describe(Throwable t) {
        return t.getMessage() == null ? t.getClass().getSimpleName() : t.getClass().getSimpleName() + ": " + t.getMessage();
    }

    /** Sets the fence; the first failure is the one reported. */
    private void fence(Throwable t) {
        synchronized (this) {
            if (broken == null) broken = t;
        }
    }

    private void writeInCheckpoint(long offset, ByteBuffer src) throws IOException {
        checkNotFenced();
        long first = offset / bs;
        long last = (offset + src.remaining() - 1) / bs;
        boolean holdBlock0 = first == 0;
        if (holdBlock0) block0Lock.lock();
        try {
            Plan plan;
            while (true) {
                BusyBlocks.Claim wait;
                boolean needBlock0Lock = false;
                synchronized (mapLock) {
                    checkNotFenced();
                    if (state != State.CHECKPOINT) throw new IllegalStateException("state changed during write");
                    wait = busy.conflict(Math.max(first, 1), last + 1);
                    if (wait == null && first == 0) wait = busy.conflict(s0c, s0c + 1);
                    if (wait == null) {
                        if (!holdBlock0 && s0c >= first && s0c <= last) {
                            needBlock0Lock = true;
                        } else {
                            plan = planOrFence(first, last);
                            break;
                        }
                    }
                }
                if (needBlock0Lock) {
                    block0Lock.lock();
                    holdBlock0 = true;
                    continue;
                }
                wait.await();   // holding no claim; plan again once it has ended
            }
            execute(plan, offset, src);
        } finally {
            if (holdBlock0) block0Lock.unlock();
        }
    }

    /** {@link #plan}, with any failure but ENOSPC fencing writes: the map may be half changed. */
    private Plan planOrFence(long first, long last) throws DeviceException {
        try {
            return plan(first, last);
        } catch (DeviceException e) {
            throw e;
        } catch (Throwable t) {
            fence(t);
            log.error("planning a backup failed on {}; refusing further writes: {}", deviceName, t.toString());
            throw new DeviceException(Errno.EIO, "planning a backup failed on " + deviceName + ": " + describe(t), t);
        }
    }

    /** Decides (under the map lock) what to back up and where; changes the map; ENOSPC changes nothing. */
    private Plan plan(long first, long last) throws DeviceException {
        Plan p = new Plan();
        long from = Math.max(first, 1);
        // Pass 1: free blocks in the request become CHANGED first, so they are not handed out as backup space.
        if (from <= last) {
            map.forEachIn(from, last + 1, (s, e, t) -> {
                if (t == RangeType.FREE) p.set(s, e, RangeType.CHANGED);
            });
        }
        List<long[]> toBackUp = new ArrayList<>();
        if (from <= last) {
            map.forEachIn(from, last + 1, (s, e, t) -> {
                if (t == RangeType.UNCHANGED || t == RangeType.BACKUP) toBackUp.add(new long[] {s, e, t.ordinal()});
            });
        }
        boolean ok = true;
        for (long[] run : toBackUp) {
            long s = run[0];
            while (s < run[1]) {
                long[] got = p.allocate(Math.min(run[1] - s, MAX_ENTRY_BLOCKS));
                if (got == null) { ok = false; break; }
                p.copies.add(new Copy(s, got[0], (int) got[1], true));
                p.entries++;
                s += got[1];
            }
            if (!ok) break;
            if (run[2] == RangeType.BACKUP.ordinal()) p.movedBlocks += run[1] - run[0]; else p.originalBlocks += run[1] - run[0];
            p.set(run[0], run[1], RangeType.CHANGED);
        }
        // The physical block that holds the live block 0, overwritten as ordinary data.
        long s0 = s0c;
        boolean s0Backup = s0cIsBackup;
        if (ok && s0 >= from && s0 <= last) {
            long[] got = p.allocate(1);
            if (got == null) {
                ok = false;
            } else {
                p.set(got[0], got[0] + 1, RangeType.SECTOR0_CURRENT);
                p.set(s0, s0 + 1, RangeType.CHANGED);
                // If it is the backup of the original block 0, the copy is logged; otherwise it only moves.
                p.copies.add(new Copy(s0, got[0], 1, s0Backup));
                if (s0Backup) p.entries++;
                s0 = got[0];
                p.newSector0 = s0;
            }
        }
        // Block 0 itself: redirected; the first write moves it off the backup copy.
        if (ok && first == 0 && s0Backup) {
            long[] got = p.allocate(1);
            if (got == null) {
                ok = false;
            } else {
                p.set(got[0], got[0] + 1, RangeType.SECTOR0_CURRENT);
                p.set(s0, s0 + 1, RangeType.BACKUP);
                p.block0MoveFrom = s0;
                p.block0MoveTo = got[0];
                s0 = got[0];
                s0Backup = false;
                p.newSector0 = s0;
            }
        }
        // Keep enough free blocks for the log blocks these entries will need.
        long reserve = LogCommitter.rolloversFor(plannedEntries + p.entries, bs) - rolloverBlocksUsed;
        if (ok && map.count(RangeType.FREE) < reserve) ok = false;
        if (!ok) {
            p.rollback();
            throw new DeviceException(Errno.ENOSPC, "no free space left for backups on " + deviceName
                    + " (" + freeBytesLocked() + " bytes free); the checkpoint is intact and can still be committed or rolled back");
        }
        // Claim every block this write will touch, before anyone else can see the new map.
        List<long[]> touched = new ArrayList<>();
        if (from <= last) touched.add(new long[] {from, last + 1});
        if (first == 0) touched.add(new long[] {s0c, s0c + 1});
        for (Copy c : p.copies) {
            touched.add(new long[] {c.from, c.from + c.blocks});
            touched.add(new long[] {c.to, c.to + c.blocks});
        }
        if (p.block0MoveTo >= 0) {
            touched.add(new long[] {p.block0MoveFrom, p.block0MoveFrom + 1});
            touched.add(new long[] {p.block0MoveTo, p.block0MoveTo + 1});
        }
        if (p.newSector0 >= 0) touched.add(new long[] {p.newSector0, p.newSector0 + 1});
        p.claim = busy.claim(touched);
        plannedEntries += p.entries;
        originalBackups += p.originalBlocks;
        movedBackups += p.movedBlocks;
        s0c = s0;
        s0cIsBackup = s0Backup;
        return p;
    }

    private void execute(Plan p, long offset, ByteBuffer src) throws IOException {
        try {
            backUp(p, offset, src);
            // The old data is safe: let the write land, still holding the claim, so that
            // no discard makes these blocks backup space before the data is there.
            int inBlock0 = offset < bs ? (int) Math.min(src.remaining(), bs - offset) : 0;
            if (inBlock0 > 0) {
                if (p.block0MoveTo < 0) {
                    long s0 = currentS0c();
                    dev.write(s0 * bs + offset, src.slice().limit(inBlock0));
                }
                src.position(src.position() + inBlock0);
                offset += inBlock0;
            }
            if (src.hasRemaining()) dev.write(offset, src);
        } finally {
            synchronized (mapLock) {
                busy.remove(p.claim);
            }
            BusyBlocks.wake(p.claim);
        }
    }

    /** Copies, moves and logs what the plan says; durable when it returns. Any failure fences writes. */
    private void backUp(Plan p, long offset, ByteBuffer src) throws IOException {
        try {
            List<LogEntry> entries = new ArrayList<>();
            for (Copy c : p.copies) {
                byte[] data = new byte[c.blocks * bs];
                dev.read(c.from * bs, ByteBuffer.wrap(data));
                dev.write(c.to * bs, ByteBuffer.wrap(data));
                if (c.logged) {
                    long source = c.from * sectorsPerBlock;
                    entries.add(new LogEntry(source, c.to * sectorsPerBlock, data.length,
                            BowCrc.entryChecksum(source, bs, data, 0, data.length)));
                }
            }
            int inBlock0 = offset < bs ? (int) Math.min(src.remaining(), bs - offset) : 0;
            if (p.block0MoveTo >= 0) {
                // New block 0 content goes to its new home before the header points there.
                byte[] block = new byte[bs];
                dev.read(p.block0MoveFrom * bs, ByteBuffer.wrap(block));
                src.slice().limit(inBlock0).get(block, (int) offset, inBlock0);
                dev.write(p.block0MoveTo * bs, ByteBuffer.wrap(block));
            }
            if (!entries.isEmpty() || p.newSector0 >= 0) {
                LogCommitter c = committer;
                long sector0 = p.newSector0 >= 0 ? p.newSector0 * sectorsPerBlock : -1;
                c.commit(entries, sector0);
            }
        } catch (Throwable e) {
            // The map already calls these blocks changed; without their backups no
            // further write may land, or the rollback would be wrong. Fenced before
            // the claim ends, so whoever waited on it sees the failure. An Error
            // (out of memory) is treated the same way: nothing half done is trusted.
            fence(e);
            log.error("backup before write failed on {}; refusing further writes (roll back or commit offline): {}", deviceName, e.toString());
            throw new DeviceException(Errno.EIO, "backup before write failed on " + deviceName + ": " + describe(e), e);
        }
    }

    // ---------------------------------------------------------------- lifecycle

    @Override
    public void startCheckpoint() throws IOException {
        stateLock.writeLock().lock();
        try {
            if (state != State.TRIM) {
                throw new IllegalStateException("cannot start a checkpoint in state " + state.ordinal() + " " + state
                        + ": a checkpoint starts from state 0 TRIM only");
            }
            long s;
            synchronized (mapLock) {
                s = map.firstFree();
                if (s < 0) {
                    throw new DeviceException(Errno.ENOSPC, "no free space known on " + deviceName
                            + ": trim the filesystem (fstrim / bowctl checkpoint start --fitrim MOUNTPOINT) before starting a checkpoint");
                }
                freeAtStart = freeRuns();
            }
            byte[] original = new byte[bs];
            dev.read(0, ByteBuffer.wrap(original));
            int crc0 = BowCrc.entryChecksum(0, bs, original, 0, bs);
            if (freeMapFile != null) {
                // Before the log exists: a checkpoint on disk always has its free map.
                FreeMapFile.write(freeMapFile, new FreeMapFile.Identity(bs, blocks, s * sectorsPerBlock, crc0), freeAtStart);
            }
            dev.write(s * bs, ByteBuffer.wrap(original));
            dev.flush();
            // Only sector 0 changes: header and entry 0. The rest of block 0 keeps its bytes
            // (past the count, so not part of the log), and a crash leaves block 0 either
            // untouched or a valid log.
            LogBlock lb = new LogBlock(original.clone())
                    .initHeader(LogBlock.MAGIC, bs, 1, 0, s * sectorsPerBlock);
            lb.setEntry(0, new LogEntry(0, s * sectorsPerBlock, bs, crc0));
            dev.write(0, ByteBuffer.wrap(lb.bytes(), 0, SECTOR));
            dev.flush();
            synchronized (mapLock) {
                map.set(0, 1, RangeType.SECTOR0);
                map.set(s, s + 1, RangeType.SECTOR0_CURRENT);
                s0c = s;
                s0cIsBackup = true;
                plannedEntries = 0;
                rolloverBlocksUsed = 0;
            }
            committer = new LogCommitter(dev, lb, this::allocateLogBlock);
            state = State.CHECKPOINT;
            log.info("checkpoint started on {}: {} bytes free for backups, block 0 now at block {}", deviceName, freeBytes(), s);
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    /** A free block for the copy of a full log block, claimed until the log committer releases it. */
    private LogCommitter.Allocation allocateLogBlock() throws IOException {
        BusyBlocks.Claim claim;
        long f;
        synchronized (mapLock) {
            f = map.lastFree();
            if (f < 0) throw new DeviceException(Errno.ENOSPC, "no free block for the next log block (reserve exhausted)");
            f = map.runEnd(f) - 1;   // high, like the backups
            map.set(f, f + 1, RangeType.BACKUP);
            rolloverBlocksUsed++;
            claim = busy.claim(f, f + 1);
        }
        return new LogCommitter.Allocation(f, () -> {
            synchronized (mapLock) {
                busy.remove(claim);
            }
            BusyBlocks.wake(claim);
        });
    }

    @Override
    public void commit() throws IOException {
        stateLock.writeLock().lock();
        try {
            if (state != State.CHECKPOINT) {
                throw new IllegalStateException("cannot commit in state " + state.ordinal() + " " + state
                        + ": only a running checkpoint (state 1) can be committed");
            }
            committer.quiesce();
            byte[] live = new byte[bs];
            dev.read(currentS0c() * bs, ByteBuffer.wrap(live));
            // Sectors 1.. first, then the header sector: a crash leaves a valid header
            // (offline commit finishes the job) or the committed block.
            if (bs > SECTOR) {
                dev.write(SECTOR, ByteBuffer.wrap(live, SECTOR, bs - SECTOR));
                dev.flush();
            }
            dev.write(0, ByteBuffer.wrap(live, 0, SECTOR));
            dev.flush();
            synchronized (mapLock) {
                map = null;
                busy = new BusyBlocks();
                s0c = -1;
            }
            committer = null;
            state = State.COMMITTED;
            if (freeMapFile != null) AtomicFile.remove(freeMapFile);   // nothing to resume any more
            log.info("checkpoint on {} committed; now a pass-through device", deviceName);
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    // ---------------------------------------------------------------- status

    public long freeBytes() {
        synchronized (mapLock) {
            return freeBytesLocked();
        }
    }

    private long freeBytesLocked() {
        if (map == null) return 0;
        long free = map.count(RangeType.FREE);
        if (state != State.CHECKPOINT) return free * bs;
        // The most single-block backups that still leave room for their log blocks.
        long lo = 0, hi = free;
        while (lo < hi) {
            long k = (lo + hi + 1) / 2;
            if (k + LogCommitter.rolloversFor(plannedEntries + k, bs) - rolloverBlocksUsed <= free) lo = k; else hi = k - 1;
        }
        return lo * bs;
    }

    /** FREE runs as byte ranges {start, end, start, end, ...}. */
    private long[] freeRuns() {
        // Primitive all the way: with a million free runs this runs under the state lock.
        long[] runs = map.runsOf(RangeType.FREE);
        for (int i = 0; i < runs.length; i++) runs[i] *= bs;
        return runs;
    }

    /**
     * The byte ranges that were free (trimmed) when the checkpoint started, as
     * {start, end} pairs: after a rollback only these may differ from the start.
     * Before a checkpoint: the ranges free now.
     */
    public List<long[]> freeRangesAtStart() {
        synchronized (mapLock) {
            long[] runs = state == State.TRIM && map != null ? freeRuns() : freeAtStart;
            List<long[]> out = new ArrayList<>();
            for (int i = 0; i < runs.length; i += 2) out.add(new long[] {runs[i], runs[i + 1]});
            return out;
        }
    }

    @Override public String mode() { return "bow"; }

    @Override public Map<String, BlockDevice> exports() { return Map.of("", this); }

    @Override
    public EngineStatus status() {
        LogCommitter c = committer;
        Map<String, String> details = new LinkedHashMap<>();
        long ranges;
        synchronized (mapLock) {
            ranges = map == null ? 0 : map.rangeCount();
            if (map != null) {
                for (RangeType t : RangeType.VALUES) details.put("type_" + t.name().toLowerCase() + "_bytes", Long.toString(map.count(t) * bs));
            }
            if (s0c >= 0) details.put("sector0", Long.toString(s0c * sectorsPerBlock));
            // Since this daemon started: checkpointed data backed up, and backups moved because the filesystem wrote over them.
            details.put("backup_original_bytes", Long.toString(originalBackups * bs));
            details.put("backup_moved_bytes", Long.toString(movedBackups * bs));
        }
        if (c != null && c.failure() != null) details.put("error", "log write failed: " + c.failure().getMessage());
        Throwable b = broken;
        if (b != null) details.put("error", "backup failed, writes refused: " + describe(b));
        return new EngineStatus("bow", state.ordinal() + " " + state, deviceName, size(), bs, freeBytes(),
                c == null ? 0 : c.backedUpBytes(), c == null ? 0 : c.sequence(), c == null ? 0 : c.count(),
                ranges, details);
    }

    @Override
    public List<RangeRecord> ranges() {
        List<RangeRecord> out = new ArrayList<>();
        synchronized (mapLock) {
            if (map == null) return List.of(new RangeRecord(0, size(), "Passthrough"));
            map.forEach((s, e, t) -> out.add(new RangeRecord(s * bs, (e - s) * bs, typeName(t))));
        }
        return out;
    }

    /** One page of {@link #ranges()} without copying the whole table (bowctl ranges pages through millions). */
    @Override
    public List<RangeRecord> ranges(long fromOffset, int limit) {
        List<RangeRecord> out = new ArrayList<>();
        synchronized (mapLock) {
            if (fromOffset < 0 || fromOffset >= size() || limit <= 0) return out;
            if (map == null) return List.of(new RangeRecord(fromOffset, size() - fromOffset, "Passthrough"));
            long pos = fromOffset / bs;
            long first = fromOffset;
            while (pos < map.blocks() && out.size() < limit) {
                long end = map.runEnd(pos);
                out.add(new RangeRecord(first, end * bs - first, typeName(map.typeAt(pos))));
                pos = end;
                first = end * bs;
            }
        }
        return out;
    }

    private static String typeName(RangeType t) {
        return switch (t) {
            case SECTOR0 -> "Sector0";
            case SECTOR0_CURRENT -> "Sector0_current";
            case UNCHANGED -> "Unchanged";
            case FREE -> "Free";
            case CHANGED -> "Changed";
            case BACKUP -> "Backup";
        };
    }
}
