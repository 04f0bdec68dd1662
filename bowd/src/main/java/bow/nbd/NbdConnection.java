package bow.nbd;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

import static bow.nbd.NbdProtocol.*;

/**
 * One client connection: the handshake, then the transmission phase. The
 * connection's own thread runs the handshake. In transmission, threads of the
 * connection (its own, and more started as requests overlap, up to the in-flight
 * limit) take turns at the read lock to read one request with its payload (read
 * ahead: one read often brings several), then each runs its request and queues
 * the reply; the thread holding the write lock sends the queued replies (whole
 * messages, several in one gathering write), so replies of concurrent requests
 * never interleave on the wire and no request passes between threads.
 */
final class NbdConnection implements Runnable {
    private static final Logger log = LoggerFactory.getLogger(NbdConnection.class);
    /** Option data beyond this is drained and refused; no option we know needs more. */
    private static final int MAX_OPTION_LENGTH = 1 << 20;
    /** Context id handed out for base:allocation by NBD_OPT_SET_META_CONTEXT. */
    private static final int BASE_ALLOCATION_ID = 1;
    private static final int KNOWN_COMMAND_FLAGS = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE;
    private static final int MAX_ERROR_MESSAGE = 1024;
    /** The transmission phase's read-ahead buffer; payloads up to half of it are read through it. */
    static final int READ_AHEAD = 64 << 10;

    final long id;
    private final NbdServer server;
    private final SocketChannel ch;
    private final String where;
    private final CountDownLatch ended = new CountDownLatch(1);
    private final ByteBuffer small = ByteBuffer.allocate(8);
    /** The request header, read under the read lock; direct, so reading it needs no copy. */
    private final ByteBuffer header = ByteBuffer.allocateDirect(REQUEST_HEADER_SIZE);

    // Negotiated in the handshake.
    private boolean noZeroes;
    private boolean structured;
    /** Export named by the last SET_META_CONTEXT that selected base:allocation, or null. */
    private String metaExport;
    private NbdServer.Export export;
    private boolean blockStatus;

    // Transmission phase.
    private Semaphore slots;
    private Semaphore bytes;
    private volatile boolean broken;
    /** Taken by the one thread that reads the next request (header and payload). */
    private final ReentrantLock readLock = new ReentrantLock();
    /** Held by the thread sending replies (those in {@link #outbox}). */
    private final ReentrantLock writeLock = new ReentrantLock();
    /** Replies waiting to be sent by the holder of the write lock. */
    private final java.util.concurrent.ConcurrentLinkedQueue<Reply> outbox = new java.util.concurrent.ConcurrentLinkedQueue<>();
    /** The most buffers one gathering write of replies takes (well under IOV_MAX). */
    private static final int GATHER_BUFFERS = 64;
    /** Set under the read lock when the request stream ended (disconnect, EOF, violation, error). */
    private boolean readingDone;
    /** Why reading stopped, when it was not a clean end; thrown from {@link #transmission()}. */
    private Throwable readFailure;
    /**
     * Transmission-phase input read ahead (read lock): bytes between position and limit were
     * read and not yet taken. A client keeps many requests in flight, so one read often brings
     * several, and most headers and small payloads cost no system call of their own. The
     * handshake reads exact lengths from the socket, so it leaves nothing here.
     */
    private ByteBuffer in;
    /** Set by {@link #stopReading()}: requests already read ahead are not taken either. */
    private volatile boolean inputStopped;
    /** Threads started beyond the connection's own; guarded by the read lock. */
    private final List<Thread> helpers = new java.util.ArrayList<>();

    // Deadlines (enforced by the server's deadline task) and eviction.
    /** What the reader does: the client timeout applies to HANDSHAKE (whole) and READING (one request). */
    private enum Phase { HANDSHAKE, IDLE, READING, HELD }
    private volatile Phase phase = Phase.HANDSHAKE;
    private volatile long phaseSince = System.nanoTime();
    private volatile long lastActive = System.nanoTime();
    /** When the current reply write last made progress; 0 when no write is under way. */
    private volatile long writingSince;
    private volatile boolean evicted;

    /**
     * One reply message, plus the payload bytes it held against the in-flight budgets
     * (this connection's and the server's) and how many of those were allocated.
     */
    private record Reply(ByteBuffer[] buffers, int bytesHeld, int allocated, ByteBuffer pooled) {
        Reply(ByteBuffer[] buffers, int bytesHeld) { this(buffers, bytesHeld, 0, null); }
    }

    /** A request that passed validation, to run on the thread that read it. */
    private record Request(int type, int flags, long cookie, long offset, long length, ByteBuffer payload, int bytesHeld) {}

    /** What one read gave: a request to run, or a reply to send at once (an error). */
    private record Work(Request request, Reply reply) {}

    private void enter(Phase p) {
        phaseSince = System.nanoTime();
        phase = p;
    }

    boolean inHandshake() { return phase == Phase.HANDSHAKE; }

    long lastActive() { return lastActive; }

    boolean isEvicted() { return evicted; }

    /** In handshake, or nothing in flight and no reply being sent: closing it loses no acknowledged work. */
    boolean isEvictable() {
        if (evicted) return false;
        if (phase == Phase.HANDSHAKE) return true;
        Semaphore s = slots;
        // Idle, or sending a request it has not finished (a stalled header or payload).
        Phase p = phase;
        return s != null && s.availablePermits() == server.options.maxInFlightRequests && writingSince == 0
                && (p == Phase.IDLE || p == Phase.READING);
    }

    /** Closed to make room for a new connection. */
    void evict() {
        evicted = true;
        abort();
    }

    /** Called by the server's deadline task: closes the connection past a deadline. */
    void enforceDeadline(long now, long limitNanos) {
        if (evicted) return;
        Phase p = phase;
        String why = null;
        if (p == Phase.HANDSHAKE && now - phaseSince > limitNanos) why = "no handshake";
        else if (p == Phase.READING && now - phaseSince > limitNanos) why = "no whole request";
        else {
            long w = writingSince;
            if (w != 0 && now - w > limitNanos) why = "replies not taken";
        }
        if (why == null) return;
        log.info("connection {}: {} within {} ms; closing it", id, why, TimeUnit.NANOSECONDS.toMillis(limitNanos));
        evicted = true;   // no longer counts against the limit
        abort();
    }

    /** The client broke the protocol in a way that leaves no choice but closing. */
    private static final class ProtocolViolation extends IOException {
        ProtocolViolation(String m) { super(m); }
    }

    NbdConnection(NbdServer server, SocketChannel ch, long id, String where) {
        this.server = server;
        this.ch = ch;
        this.id = id;
        this.where = where;
    }

    @Override
    public void run() {
        log.debug("connection {} opened on {}", id, where);
        try {
            if (handshake()) {
                transmission();
            }
        } catch (ProtocolViolation e) {
            log.warn("connection {}: {}; closing it", id, LogText.of(e.getMessage()));
        } catch (EOFException e) {
            log.debug("connection {}: client went away mid-message", id);
        } catch (IOException e) {
            if (!server.isClosing()) log.info("connection {}: {}", id, e.toString());
        } catch (RuntimeException | Error e) {
            log.error("connection {} failed", id, e);
        } finally {
            NbdServer.closeQuietly(ch);
            server.connectionEnded(this);
            ended.countDown();
            log.debug("connection {} closed", id);
        }
    }

    /** Stops taking requests; what is in flight still completes. */
    void stopReading() {
        inputStopped = true;
        try {
            ch.shutdownInput();
        } catch (IOException e) {
            // already closed
        }
    }

    /** Cuts the connection at once. */
    void abort() { NbdServer.closeQuietly(ch); }

    boolean awaitEnd(long nanos) {
        try {
            return ended.await(nanos, TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    // ---------------------------------------------------------------- handshake

    /** Runs option haggling; true when an export was chosen and transmission starts. */
    private boolean handshake() throws IOException {
        ByteBuffer hello = ByteBuffer.allocate(18);
        hello.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).flip();
        writeFully(hello);
        int clientFlags = readInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            throw new ProtocolViolation(String.format("unknown client flags 0x%x", clientFlags));
        }
        noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;
        // A client without C_FIXED_NEWSTYLE still gets fixed-newstyle replies (the spec allows it).
        while (true) {
            long magic = readLong();
            if (magic != IHAVEOPT) {
                throw new ProtocolViolation(String.format("bad option magic 0x%016x", magic));
            }
            int opt = readInt();
            long len = readInt() & 0xffffffffL;
            if (len > MAX_OPTION_LENGTH) {
                if (opt == OPT_EXPORT_NAME) throw new ProtocolViolation("NBD_OPT_EXPORT_NAME with " + len + " bytes");
                drain(len);
                optionError(opt, REP_ERR_TOO_BIG, "option data of " + len + " bytes is too long");
                continue;
            }
            byte[] data = new byte[(int) len];
            readFully(ByteBuffer.wrap(data));
            if (server.isClosing() && opt != OPT_ABORT) {
                if (opt == OPT_EXPORT_NAME) throw new ProtocolViolation("server is shutting down");
                optionError(opt, REP_ERR_SHUTDOWN, "server is shutting down");
                continue;
            }
            switch (opt) {
                case OPT_EXPORT_NAME -> {
                    String name = new String(data, StandardCharsets.UTF_8);
                    NbdServer.Export e = server.export(name);
                    if (e == null) throw new ProtocolViolation("NBD_OPT_EXPORT_NAME for unknown export '" + LogText.of(name) + "'");
                    select(e);
                    ByteBuffer r = ByteBuffer.allocate(noZeroes ? 10 : 134);
                    r.putLong(e.device().size()).putShort((short) transmissionFlags(e));
                    r.position(r.limit()).flip();
                    writeFully(r);
                    return true;
                }
                case OPT_ABORT -> {
                    try {
                        optionReply(opt, REP_ACK, new byte[0]);
                    } catch (IOException e) {
                        // the client may hang up without waiting for the ACK
                    }
                    log.debug("connection {}: client aborted the handshake", id);
                    return false;
                }
                case OPT_LIST -> {
                    if (len != 0) {
                        optionError(opt, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
                        continue;
                    }
                    for (String name : server.exportNames()) {
                        byte[] n = name.getBytes(StandardCharsets.UTF_8);
                        optionReply(opt, REP_SERVER, ByteBuffer.allocate(4 + n.length).putInt(n.length).put(n).array());
                    }
                    optionReply(opt, REP_ACK, new byte[0]);
                }
                case OPT_INFO, OPT_GO -> {
                    if (infoOrGo(opt, ByteBuffer.wrap(data))) return true;
                }
                case OPT_STRUCTURED_REPLY -> {
                    if (len != 0) {
                        optionError(opt, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
                        continue;
                    }
                    structured = true;
                    optionReply(opt, REP_ACK, new byte[0]);
                }
                case OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT -> metaContext(opt, ByteBuffer.wrap(data));
                default -> optionError(opt, REP_ERR_UNSUP, "option " + opt + " is not supported");
            }
        }
    }

    private boolean infoOrGo(int opt, ByteBuffer d) throws IOException {
        String name = readString(d, 2);
        if (name == null || d.remaining() < 2) {
            optionError(opt, REP_ERR_INVALID, "malformed export name");
            return false;
        }
        if (name.indexOf('\0') >= 0) {
            optionError(opt, REP_ERR_INVALID, "export name contains NUL");
            return false;
        }
        int n = d.getShort() & 0xffff;
        if (d.remaining() != 2 * n) {
            optionError(opt, REP_ERR_INVALID, "information request count does not match the option length");
            return false;
        }
        Set<Integer> wanted = new HashSet<>();
        for (int i = 0; i < n; i++) wanted.add(d.getShort() & 0xffff);
        NbdServer.Export e = server.export(name);
        if (e == null) {
            optionError(opt, REP_ERR_UNKNOWN, "no export named '" + name + "'");
            return false;
        }
        ByteBuffer info = ByteBuffer.allocate(12);
        info.putShort((short) INFO_EXPORT).putLong(e.device().size()).putShort((short) transmissionFlags(e));
        optionReply(opt, REP_INFO, info.array());
        if (wanted.contains(INFO_NAME)) {
            byte[] nb = e.name().getBytes(StandardCharsets.UTF_8);
            optionReply(opt, REP_INFO, ByteBuffer.allocate(2 + nb.length).putShort((short) INFO_NAME).put(nb).array());
        }
        if (wanted.contains(INFO_DESCRIPTION) && e.description() != null) {
            byte[] db = truncate(e.description().getBytes(StandardCharsets.UTF_8), MAX_STRING);
            optionReply(opt, REP_INFO, ByteBuffer.allocate(2 + db.length).putShort((short) INFO_DESCRIPTION).put(db).array());
        }
        // Sent whether asked or not (the spec allows it); we do not reject unaligned requests.
        NbdServer.Options o = server.options;
        optionReply(opt, REP_INFO, ByteBuffer.allocate(14).putShort((short) INFO_BLOCK_SIZE)
                .putInt(o.minimumBlockSize).putInt(o.preferredBlockSize).putInt(o.maximumPayload).array());
        optionReply(opt, REP_ACK, new byte[0]);
        if (opt == OPT_GO) {
            select(e);
            return true;
        }
        return false;
    }

    private void metaContext(int opt, ByteBuffer d) throws IOException {
        if (!structured) {
            optionError(opt, REP_ERR_INVALID, "negotiate NBD_OPT_STRUCTURED_REPLY first");
            return;
        }
        String name = readString(d, 4);
        if (name == null || name.indexOf('\0') >= 0) {
            optionError(opt, REP_ERR_INVALID, name == null ? "malformed export name" : "export name contains NUL");
            return;
        }
        long count = d.getInt() & 0xffffffffL;
        List<String> queries = new java.util.ArrayList<>();
        for (long i = 0; i < count; i++) {
            String q = readString(d, 0);
            if (q == null) {
                optionError(opt, REP_ERR_INVALID, "malformed query");
                return;
            }
            queries.add(q);
        }
        if (d.hasRemaining()) {
            optionError(opt, REP_ERR_INVALID, "trailing bytes after the queries");
            return;
        }
        if (server.export(name) == null) {
            optionError(opt, REP_ERR_UNKNOWN, "no export named '" + name + "'");
            return;
        }
        boolean match;
        if (opt == OPT_LIST_META_CONTEXT) {
            match = queries.isEmpty() || queries.contains("base:") || queries.contains(BASE_ALLOCATION);
        } else {
            match = queries.contains(BASE_ALLOCATION);
            metaExport = match ? name : null;
        }
        if (match) {
            byte[] cn = BASE_ALLOCATION.getBytes(StandardCharsets.UTF_8);
            int ctxId = opt == OPT_SET_META_CONTEXT ? BASE_ALLOCATION_ID : 0;
            optionReply(opt, REP_META_CONTEXT, ByteBuffer.allocate(4 + cn.length).putInt(ctxId).put(cn).array());
        }
        optionReply(opt, REP_ACK, new byte[0]);
    }

    /** A string preceded by its 32-bit length, with at least {@code after} bytes left behind it; null if malformed. */
    private static String readString(ByteBuffer d, int after) {
        if (d.remaining() < 4) return null;
        long n = d.getInt() & 0xffffffffL;
        if (n > MAX_STRING || n > d.remaining() - after) return null;
        byte[] b = new byte[(int) n];
        d.get(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private void select(NbdServer.Export e) {
        export = e;
        // Contexts set for another export do not carry over (the spec ties them to the name).
        blockStatus = structured && e.name().equals(metaExport);
        log.debug("connection {}: export '{}' ({} bytes{}{})", id, LogText.of(e.name()), e.device().size(),
                e.readOnly() ? ", read-only" : "", structured ? ", structured replies" : "");
    }

    private int transmissionFlags(NbdServer.Export e) {
        // CAN_MULTI_CONN: every connection goes to the same device object, so a
        // flush on one covers writes acknowledged on all.
        int f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_CACHE | TF_CAN_MULTI_CONN;
        f |= e.readOnly() ? TF_READ_ONLY : TF_SEND_TRIM | TF_SEND_WRITE_ZEROES;
        if (structured) f |= TF_SEND_DF; // we always answer a read in one chunk
        return f;
    }

    private void optionReply(int opt, int type, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(20 + data.length);
        b.putLong(OPTION_REPLY_MAGIC).putInt(opt).putInt(type).putInt(data.length).put(data).flip();
        writeFully(b);
    }

    private void optionError(int opt, int type, String message) throws IOException {
        log.debug("connection {}: option {} refused: {}", id, opt, LogText.of(message));
        optionReply(opt, type, truncate(message.getBytes(StandardCharsets.UTF_8), MAX_STRING));
    }

    // ------------------------------------------------------------- transmission

    private void transmission() throws IOException {
        NbdServer.Options o = server.options;
        slots = new Semaphore(o.maxInFlightRequests);
        bytes = new Semaphore(o.maxInFlightBytes);
        in = ByteBuffer.allocateDirect(READ_AHEAD).limit(0);
        serve();
        // Requests in flight finish and their replies go out before the socket closes.
        while (true) {
            Thread t;
            readLock.lock();
            try {
                t = helpers.isEmpty() ? null : helpers.remove(helpers.size() - 1);
            } finally {
                readLock.unlock();
            }
            if (t == null) break;
            joinUninterruptibly(t);
        }
        Throwable f = readFailure;
        if (f instanceof IOException e) throw e;
        if (f instanceof RuntimeException e) throw e;
        if (f instanceof Error e) throw e;
    }

    private static void joinUninterruptibly(Thread t) {
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    /** One request thread: read a request (taking turns), run it, send its reply; until the stream ends. */
    private void serve() {
        while (true) {
            Work w;
            readLock.lock();
            try {
                if (readingDone) return;
                w = readRequest();
                if (w == null) {
                    readingDone = true;
                    return;
                }
                // Nobody left to read the next request while this one runs: start a thread for it.
                if (!readLock.hasQueuedThreads() && helpers.size() + 1 < server.options.maxInFlightRequests
                        && !server.isClosing() && server.tryReserveRequestThread()) {
                    startHelper();
                }
            } catch (Throwable t) {
                readingDone = true;
                if (readFailure == null) readFailure = t;
                return;
            } finally {
                readLock.unlock();
            }
            send(w.request() != null ? execute(w.request()) : w.reply());
        }
    }

    /** Under the read lock. */
    private void startHelper() {
        Thread t = new Thread(() -> {
            try {
                serve();
            } finally {
                server.releaseRequestThread();
            }
        }, "nbd-conn-" + id + "-" + server.nextRequestThreadId());
        t.setDaemon(true);
        try {
            t.start();
        } catch (OutOfMemoryError e) {   // no native thread: go on with the threads there are
            server.releaseRequestThread();
            return;
        }
        helpers.add(t);
    }

    /** Reads the next request under the read lock; null at the end of the stream (or NBD_CMD_DISC). */
    private Work readRequest() throws IOException {
        ByteBuffer header = this.header;
        header.clear();
        enter(Phase.IDLE);
        if (!readHeader(header)) {
            log.debug("connection {}: client closed without NBD_CMD_DISC", id);
            return null;
        }
        header.flip();
        int magic = header.getInt();
        if (magic != REQUEST_MAGIC) {
            throw new ProtocolViolation(String.format("bad request magic 0x%08x", magic));
        }
        int flags = header.getShort() & 0xffff;
        int type = header.getShort() & 0xffff;
        long cookie = header.getLong();
        long offset = header.getLong();
        long length = header.getInt() & 0xffffffffL;
        if (type == CMD_DISC) {
            log.debug("connection {}: client disconnects", id);
            return null;
        }
        lastActive = System.nanoTime();
        // Held back (no deadline of ours) while the client has its share in flight.
        enter(Phase.HELD);
        slots.acquireUninterruptibly();
        boolean ok = false;
        try {
            Work w = request(type, flags, cookie, offset, length);
            ok = true;
            return w;
        } finally {
            if (!ok) slots.release();
        }
    }

    /** Validates one request and reads its payload, or makes its error reply. Holds one slot. */
    private Work request(int type, int flags, long cookie, long offset, long length) throws IOException {
        BlockDevice dev = export.device();
        long size = dev.size();
        boolean inRange = offset >= 0 && offset <= size && length <= size - offset;
        int max = server.options.maximumPayload;
        int err = 0;
        String why = null;
        if ((flags & ~KNOWN_COMMAND_FLAGS) != 0) {
            err = EINVAL;
            why = String.format("unsupported command flags 0x%x", flags);
        } else if ((flags & CMD_FLAG_DF) != 0 && !structured) {
            err = EINVAL;
            why = "NBD_CMD_FLAG_DF without structured replies";
        } else if ((flags & CMD_FLAG_DF) != 0 && type != CMD_READ) {
            err = EINVAL;
            why = "NBD_CMD_FLAG_DF is only for NBD_CMD_READ";
        } else if ((flags & CMD_FLAG_NO_HOLE) != 0 && type != CMD_WRITE_ZEROES) {
            err = EINVAL;
            why = "NBD_CMD_FLAG_NO_HOLE is only for NBD_CMD_WRITE_ZEROES";
        } else if ((flags & CMD_FLAG_REQ_ONE) != 0 && type != CMD_BLOCK_STATUS) {
            err = EINVAL;
            why = "NBD_CMD_FLAG_REQ_ONE is only for NBD_CMD_BLOCK_STATUS";
        } else if ((type == CMD_READ || type == CMD_WRITE) && length > max) {
            err = EOVERFLOW;
            why = "length " + length + " exceeds the maximum payload of " + max;
        } else {
            switch (type) {
                case CMD_READ, CMD_CACHE -> {
                    if (!inRange) { err = EINVAL; why = range(offset, length, size); }
                }
                case CMD_WRITE, CMD_WRITE_ZEROES -> {
                    if (export.readOnly()) { err = EPERM; why = "export is read-only"; }
                    else if (!inRange) { err = ENOSPC; why = range(offset, length, size); }
                }
                // The spec: ENOSPC for writes past the end, EINVAL for reads and trims.
                case CMD_TRIM -> {
                    if (export.readOnly()) { err = EPERM; why = "export is read-only"; }
                    else if (!inRange) { err = EINVAL; why = range(offset, length, size); }
                }
                case CMD_FLUSH -> {
                    if (offset != 0 || length != 0) { err = EINVAL; why = "NBD_CMD_FLUSH takes offset and length 0"; }
                }
                case CMD_BLOCK_STATUS -> {
                    if (!blockStatus) { err = EINVAL; why = "no metadata context was negotiated"; }
                    else if (length == 0 || !inRange) { err = EINVAL; why = range(offset, length, size); }
                }
                default -> { err = EINVAL; why = "unknown command " + type; }
            }
        }
        int held = err == 0 && (type == CMD_READ || type == CMD_WRITE) ? (int) length : 0;
        if (held > 0) {
            bytes.acquireUninterruptibly(held);
            // The daemon-wide budget is taken before any buffer exists; past the client
            // timeout without it the request fails with ENOMEM and the stream stays in sync.
            if (!server.acquireMemory(held, server.options.clientTimeout.toNanos())) {
                bytes.release(held);
                held = 0;
                err = ENOMEM;
                why = "request payload memory of the server is exhausted; try again";
            }
        }
        if (err != 0) {
            log.debug("connection {}: {} rejected: {}", id, commandName(type), LogText.of(why));
            if (type == CMD_WRITE) {
                enter(Phase.READING);
                drainRequest(length); // keep the stream in sync
            }
            return new Work(null, new Reply(errorReply(type, cookie, err, why), 0));
        }
        ByteBuffer payload = null;
        int allocated = 0;
        try {
            if (type == CMD_WRITE) {
                enter(Phase.READING);
                // Read straight into the buffer the device write takes (direct up to 1 MiB).
                payload = server.allocatePayload(held);
                allocated = held;
                readPayload(payload);
                payload.flip();
            }
        } catch (IOException | RuntimeException | Error e) {
            bytes.release(held);
            server.releaseMemory(held, allocated);
            server.recycle(payload);
            throw e;
        }
        return new Work(new Request(type, flags, cookie, offset, length, payload, held), null);
    }

    private static String range(long offset, long length, long size) {
        return "range [" + Long.toUnsignedString(offset) + ", +" + length + ") is outside the export of " + size + " bytes";
    }

    /** Runs a request on the thread that read it; its reply, to send. */
    private Reply execute(Request r) {
        // The write's payload, or the read's data buffer (allocated in perform), counts until the reply is sent.
        int allocated = r.type() == CMD_READ || r.type() == CMD_WRITE ? r.bytesHeld() : 0;
        ByteBuffer[] reply;
        ByteBuffer[] readData = new ByteBuffer[1];
        try {
            reply = perform(r, readData);
        } catch (DeviceException e) {
            log.debug("connection {}: {} at {} failed: {}", id, commandName(r.type()), r.offset(), e.getMessage());
            reply = errorReply(r.type(), r.cookie(), wireError(e.errno()), e.getMessage());
        } catch (Exception | Error e) {
            log.warn("connection {}: {} at {} (+{}) failed", id, commandName(r.type()), r.offset(), r.length(), e);
            reply = errorReply(r.type(), r.cookie(), EIO, String.valueOf(e));
        }
        if (r.payload() != null) {   // the device is done with it
            server.recycle(r.payload());
        }
        // A read's buffer goes back once the reply is sent.
        return new Reply(reply, r.bytesHeld(), allocated, readData[0]);
    }

    private ByteBuffer[] perform(Request r, ByteBuffer[] readData) throws IOException {
        BlockDevice dev = export.device();
        boolean fua = (r.flags() & CMD_FLAG_FUA) != 0;
        switch (r.type()) {
            case CMD_READ -> {
                int n = (int) r.length();
                ByteBuffer data = server.allocatePayload(n);
                readData[0] = data;
                for (int pos = 0; pos < n; pos += NbdServer.IO_SLICE) {
                    dev.read(r.offset() + pos, data.limit(Math.min(n, pos + NbdServer.IO_SLICE)));
                }
                data.flip();
                server.bytesRead.add(r.length());
                return readReply(r.cookie(), r.offset(), data);
            }
            case CMD_WRITE -> {
                // In slices: a heap buffer handed to a FileChannel is copied into a per-thread
                // direct buffer of its size, which the JDK may keep for the thread.
                ByteBuffer p = r.payload();
                int end = p.limit();
                for (int pos = p.position(); pos < end; pos = p.position()) {
                    p.limit(Math.min(end, pos + NbdServer.IO_SLICE));
                    dev.write(r.offset() + pos, p);
                    p.position(p.limit());   // a device consumes the slice
                }
                server.bytesWritten.add(r.length());
                if (fua) dev.flush();
            }
            case CMD_FLUSH -> dev.flush();
            case CMD_TRIM -> {
                if (r.length() > 0) dev.discard(r.offset(), r.length());
                if (fua) dev.flush();
            }
            case CMD_WRITE_ZEROES -> {
                // NO_HOLE needs nothing extra: the range reads as zeros either way.
                if (r.length() > 0) dev.writeZeroes(r.offset(), r.length());
                if (fua) dev.flush();
            }
            case CMD_CACHE -> { } // nothing to prefetch: devices keep their own caches
            case CMD_BLOCK_STATUS -> {
                // One extent: everything is reported as allocated data.
                ByteBuffer b = ByteBuffer.allocate(20 + 12);
                b.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_BLOCK_STATUS)
                        .putLong(r.cookie()).putInt(12)
                        .putInt(BASE_ALLOCATION_ID).putInt((int) r.length()).putInt(0).flip();
                return new ByteBuffer[] {b};
            }
            default -> throw new IllegalStateException("unvalidated command " + r.type());
        }
        return new ByteBuffer[] {simpleReply(r.cookie(), 0)};
    }

    private ByteBuffer[] readReply(long cookie, long offset, ByteBuffer data) {
        if (!structured) return new ByteBuffer[] {simpleReply(cookie, 0), data};
        ByteBuffer h = ByteBuffer.allocate(28);
        if (data.remaining() == 0) {
            h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_NONE)
                    .putLong(cookie).putInt(0).flip();
            return new ByteBuffer[] {h};
        }
        h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_OFFSET_DATA)
                .putLong(cookie).putInt(8 + data.remaining()).putLong(offset).flip();
        return new ByteBuffer[] {h, data};
    }

    private static ByteBuffer simpleReply(long cookie, int error) {
        ByteBuffer b = ByteBuffer.allocate(16);
        b.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie).flip();
        return b;
    }

    /** An error as a structured chunk with a message when negotiated, else a simple reply. */
    private ByteBuffer[] errorReply(int type, long cookie, int error, String message) {
        if (!structured) return new ByteBuffer[] {simpleReply(cookie, error)};
        byte[] m = truncate(String.valueOf(message).getBytes(StandardCharsets.UTF_8), MAX_ERROR_MESSAGE);
        ByteBuffer b = ByteBuffer.allocate(20 + 6 + m.length);
        b.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_ERROR)
                .putLong(cookie).putInt(6 + m.length).putInt(error).putShort((short) m.length).put(m).flip();
        return new ByteBuffer[] {b};
    }

    /**
     * Sends a reply: it is queued, and the thread that holds the write lock sends every reply
     * queued, several in one gathering write. A thread that finds the lock taken leaves its
     * reply to the holder, which looks at the queue again after it lets go, so the reply
     * neither waits for the lock nor costs a system call of its own. Each reply's slot and
     * bytes go back once it is out (or the connection broke).
     */
    private void send(Reply r) {
        outbox.add(r);
        while (!outbox.isEmpty() && writeLock.tryLock()) {
            try {
                sendQueued();
            } finally {
                writeLock.unlock();
            }
        }
    }

    /** Under the write lock: sends the queued replies, gathered up to {@link #GATHER_BUFFERS} buffers and one slice of bytes. */
    private void sendQueued() {
        List<Reply> batch = new java.util.ArrayList<>();
        Reply r;
        while ((r = outbox.poll()) != null) {
            batch.clear();
            batch.add(r);
            int buffers = r.buffers().length;
            long total = remaining(r.buffers());
            Reply next;
            while ((next = outbox.peek()) != null && buffers + next.buffers().length <= GATHER_BUFFERS
                    && total + remaining(next.buffers()) <= NbdServer.IO_SLICE) {
                batch.add(outbox.poll());
                buffers += next.buffers().length;
                total += remaining(next.buffers());
            }
            ByteBuffer[] all = r.buffers();
            if (batch.size() > 1) {
                all = new ByteBuffer[buffers];
                int k = 0;
                for (Reply b : batch) for (ByteBuffer x : b.buffers()) all[k++] = x;
            }
            try {
                if (!broken) writeFully(all);
            } catch (IOException e) {
                if (!broken) {
                    broken = true;
                    log.debug("connection {}: cannot send replies: {}", id, e.toString());
                    stopReading();
                }
            } finally {
                for (Reply b : batch) sent(b);
            }
        }
    }

    private static long remaining(ByteBuffer[] bs) {
        long n = 0;
        for (ByteBuffer b : bs) n += b.remaining();
        return n;
    }

    /** A reply is out (or never will be): its slot and bytes go back. */
    private void sent(Reply r) {
        bytes.release(r.bytesHeld());
        server.releaseMemory(r.bytesHeld(), r.allocated());
        server.recycle(r.pooled());
        lastActive = System.nanoTime();
        slots.release();
    }

    // ---------------------------------------------------------------- raw I/O

    /** Writes in slices of at most {@link NbdServer#IO_SLICE}; the deadline task cuts a write that makes no progress. */
    private void writeFully(ByteBuffer b) throws IOException {
        writingSince = System.nanoTime();
        try {
            while (b.hasRemaining()) {
                int n;
                if (b.remaining() <= NbdServer.IO_SLICE) {
                    n = ch.write(b);
                } else {
                    ByteBuffer s = b.duplicate();
                    s.limit(b.position() + NbdServer.IO_SLICE);
                    n = ch.write(s);
                    b.position(b.position() + n);
                }
                if (n > 0) writingSince = System.nanoTime();
            }
        } finally {
            writingSince = 0;
        }
    }

    /** One gathering write for a reply up to {@link NbdServer#IO_SLICE} (header and data together), else slices. */
    private void writeFully(ByteBuffer[] bs) throws IOException {
        long total = 0;
        for (ByteBuffer b : bs) total += b.remaining();
        if (bs.length == 1 || total > NbdServer.IO_SLICE) {
            for (ByteBuffer b : bs) writeFully(b);
            return;
        }
        writingSince = System.nanoTime();
        try {
            while (total > 0) {
                long n = ch.write(bs);
                if (n > 0) {
                    total -= n;
                    writingSince = System.nanoTime();
                }
            }
        } finally {
            writingSince = 0;
        }
    }

    /** Reads in slices of at most {@link NbdServer#IO_SLICE} (the JDK's temporary direct copy is as big as the read). */
    private void readFully(ByteBuffer b) throws IOException {
        int end = b.limit();
        try {
            while (b.position() < end) {
                b.limit(Math.min(end, b.position() + NbdServer.IO_SLICE));
                if (ch.read(b) < 0) throw new EOFException();
            }
        } finally {
            b.limit(end);
        }
    }

    /** Reads a request header; false on a clean end of stream before its first byte (or once input stopped). */
    private boolean readHeader(ByteBuffer b) throws IOException {
        if (inputStopped) return false;
        if (in.hasRemaining()) enter(Phase.READING);   // the request's deadline starts
        while (in.remaining() < b.remaining()) {
            if (!fill()) {
                if (!in.hasRemaining()) return false;
                throw new EOFException();
            }
            if (phase != Phase.READING) enter(Phase.READING);
        }
        take(b, b.remaining());
        return true;
    }

    /** Reads a request's payload: what was read ahead, then through the buffer if small, else straight in. */
    private void readPayload(ByteBuffer b) throws IOException {
        take(b, Math.min(in.remaining(), b.remaining()));
        if (b.remaining() > READ_AHEAD / 2) {
            readFully(b);
            return;
        }
        while (b.hasRemaining()) {
            if (!fill()) throw new EOFException();
            take(b, Math.min(in.remaining(), b.remaining()));
        }
    }

    /** Skips a refused write's payload: what was read ahead, then the rest from the socket. */
    private void drainRequest(long n) throws IOException {
        int skip = (int) Math.min(in.remaining(), n);
        in.position(in.position() + skip);
        if (n > skip) drain(n - skip);
    }

    /** Moves {@code n} read-ahead bytes into {@code b}. */
    private void take(ByteBuffer b, int n) {
        if (n == 0) return;
        int at = in.position();
        b.put(in.slice(at, n));
        in.position(at + n);
    }

    /** One read into the read-ahead buffer (at least a byte); false at the end of the stream. */
    private boolean fill() throws IOException {
        in.compact();
        try {
            return ch.read(in) >= 0;
        } finally {
            in.flip();
        }
    }

    private int readInt() throws IOException {
        small.clear().limit(4);
        readFully(small);
        return small.getInt(0);
    }

    private long readLong() throws IOException {
        small.clear();
        readFully(small);
        return small.getLong(0);
    }

    private void drain(long n) throws IOException {
        ByteBuffer scratch = ByteBuffer.allocate((int) Math.min(n, 64 << 10));
        while (n > 0) {
            scratch.clear().limit((int) Math.min(n, scratch.capacity()));
            readFully(scratch);
            n -= scratch.limit();
        }
    }

    private static byte[] truncate(byte[] b, int max) {
        return b.length <= max ? b : java.util.Arrays.copyOf(b, max);
    }
}
