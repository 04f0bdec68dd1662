package bow.control;

import bow.blockdev.BlockDevice;
import bow.blockdev.LinuxNative;
import bow.engine.ModeEngine;
import bow.engine.SnapshotEngine;
import bow.proto.Range;
import bow.proto.RangesReply;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.SnapshotCreateReply;
import bow.proto.SnapshotCreateRequest;
import bow.proto.SnapshotListReply;
import bow.proto.StatusReply;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import bow.nbd.LogText;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Comparator;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.IntPredicate;
import java.util.function.IntSupplier;

/**
 * The control socket: protobuf requests from bowctl, each answered with a status
 * code and a readable message. Peers are checked by uid (SO_PEERCRED); the socket
 * file is created 0600. A malformed or oversized message gets an error and costs
 * only that connection.
 *
 * <p>Silent clients cannot lock bowctl out: a client waiting to send a request
 * (or sending it, or not reading its answer) has the request timeout to finish;
 * then its input is shut (or, stuck in a write, its connection closed). When
 * the client limit is reached, the client that has waited the longest for its
 * own request is cut to make room; only when every client is busy in the engine
 * is a new one turned away. {@link #close()} never interrupts a handler: one may
 * be inside device I/O, where an interrupt would close the device's channel for
 * every thread.
 */
public final class ControlServer implements Closeable {
    private static final Logger log = LoggerFactory.getLogger(ControlServer.class);
    /** Default of {@code maxClients}. */
    public static final int MAX_CLIENTS = 64;
    /** Default of {@code requestTimeout}. */
    public static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(10);
    /** How long {@link #close()} waits for handlers inside the engine to finish. */
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(60);

    private final ModeEngine engine;
    private final IntSupplier nbdConnections;
    private final IntPredicate uidAllowed;
    private final Runnable shutdown;
    private final ExecutorService clients = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "control-client");
        t.setDaemon(true);
        return t;
    });
    private static final long REFUSED_READ_TIMEOUT_MS = 2000;
    private final ScheduledExecutorService timeouts = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "control-timeouts");
        t.setDaemon(true);
        return t;
    });
    private final Set<Client> live = ConcurrentHashMap.newKeySet();
    private final Duration requestTimeout;
    private final int maxClients;
    private ServerSocketChannel listener;
    private Path socketPath;
    private volatile boolean closed;

    /**
     * @param uidAllowed decides which peer uids may talk to the daemon (see {@link #defaultPolicy})
     * @param shutdown   run (on its own thread) when a client asks the daemon to stop
     */
    public ControlServer(ModeEngine engine, IntSupplier nbdConnections, IntPredicate uidAllowed, Runnable shutdown) {
        this(engine, nbdConnections, uidAllowed, shutdown, REQUEST_TIMEOUT, MAX_CLIENTS);
    }

    /**
     * @param requestTimeout how long a client may take to send a request, or to take its answer
     * @param maxClients     clients served at once
     */
    public ControlServer(ModeEngine engine, IntSupplier nbdConnections, IntPredicate uidAllowed, Runnable shutdown,
                         Duration requestTimeout, int maxClients) {
        this.engine = engine;
        this.nbdConnections = nbdConnections;
        this.uidAllowed = uidAllowed;
        this.shutdown = shutdown;
        if (requestTimeout.isNegative() || requestTimeout.isZero()) throw new IllegalArgumentException("request timeout must be positive");
        if (maxClients < 1) throw new IllegalArgumentException("maxClients must be positive");
        this.requestTimeout = requestTimeout;
        this.maxClients = maxClients;
    }

    /** What a client's handler is doing; the request timeout applies to WAITING and WRITING. */
    private enum Phase { WAITING, HANDLING, WRITING }

    /** One connected client. */
    private static final class Client {
        final SocketChannel ch;
        volatile Phase phase = Phase.WAITING;
        volatile long since = System.nanoTime();
        volatile boolean cut;

        Client(SocketChannel ch) { this.ch = ch; }

        void enter(Phase p) {
            since = System.nanoTime();
            phase = p;
        }

        /** Ends the client's wait: its read sees the end of stream (a write in progress fails). */
        void cut(boolean closeAll) {
            cut = true;
            try {
                if (closeAll) ch.close(); else ch.shutdownInput();
            } catch (IOException ignored) {
                // gone already
            }
        }
    }

    /** Clients connected now (served or being cut). */
    int clientCount() { return live.size(); }

    /** Root, the daemon's own uid, and the configured allow-list. */
    public static IntPredicate defaultPolicy(Set<Integer> allowList) {
        int self = LinuxNative.getuid();
        return uid -> uid == 0 || uid == self || allowList.contains(uid);
    }

    /** Listens on a socket file only its owner (root, or the daemon's user) can connect to: mode 0600. */
    public void listen(Path path) throws IOException {
        listen(path, false);
    }

    /**
     * Listens on {@code path}. With {@code openToAllUsers} the file is 0666 so that
     * allow-listed users can connect at all; the SO_PEERCRED check then decides.
     */
    public void listen(Path path, boolean openToAllUsers) throws IOException {
        if (path.getParent() != null) Files.createDirectories(path.getParent());
        if (Files.exists(path)) {
            if (Files.isRegularFile(path) || Files.isDirectory(path)) throw new IOException(path + " exists and is not a socket; refusing to replace it");
            if (answers(path)) {
                throw new IOException("another bowd is already running on " + path + "; stop it first (bowctl shutdown)");
            }
            Files.delete(path);   // stale socket of an earlier run
        }
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        int old = LinuxNative.umask(0077);   // the socket file is born 0600: no window for other users
        try {
            ch.bind(UnixDomainSocketAddress.of(path));
        } finally {
            LinuxNative.umask(old);
        }
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString(openToAllUsers ? "rw-rw-rw-" : "rw-------"));
        this.listener = ch;
        this.socketPath = path;
        long tick = Math.max(10, Math.min(1000, requestTimeout.toMillis() / 8));
        timeouts.scheduleWithFixedDelay(this::enforceDeadlines, tick, tick, TimeUnit.MILLISECONDS);
        Thread t = new Thread(this::acceptLoop, "control-accept");
        t.setDaemon(true);
        t.start();
        log.info("control socket on {}{}", path, openToAllUsers ? " (mode 0666: peers are checked by uid)" : "");
    }

    /** Whether a live server accepts connections on the socket (a stale one refuses them). */
    private static boolean answers(Path socket) {
        try (SocketChannel probe = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            probe.connect(UnixDomainSocketAddress.of(socket));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private void acceptLoop() {
        while (!closed) {
            try {
                SocketChannel c = listener.accept();
                if (closed) {
                    reply(c, error(Response.Code.ERROR, "bowd is shutting down"));
                    c.close();
                    return;
                }
                if (!makeRoom()) {
                    log.warn("control client turned away: {} clients are busy", maxClients);
                    reply(c, error(Response.Code.ERROR, "too many control clients"));
                    c.close();
                    continue;
                }
                Client client = new Client(c);
                live.add(client);
                try {
                    clients.execute(() -> {
                        try {
                            serve(client);
                        } finally {
                            live.remove(client);
                        }
                    });
                } catch (java.util.concurrent.RejectedExecutionException e) {
                    live.remove(client);
                    c.close();
                }
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (!closed) log.warn("control accept failed: {}", e.toString());
            }
        }
    }

    /**
     * True if a new client may be served: below the limit, or after cutting the client
     * that has waited longest for its own request (a silent or half-sent one).
     */
    private boolean makeRoom() {
        long served = live.stream().filter(c -> !c.cut).count();
        if (served < maxClients) return true;
        Optional<Client> victim = live.stream().filter(c -> !c.cut && c.phase == Phase.WAITING)
                .min(Comparator.comparingLong(c -> c.since));
        if (victim.isEmpty()) return false;
        log.info("control client limit ({}) reached: cutting the client silent for {} ms", maxClients,
                TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - victim.get().since));
        victim.get().cut(false);
        return true;
    }

    /** Cuts clients past the request timeout while waiting for a request or writing an answer. */
    private void enforceDeadlines() {
        long now = System.nanoTime();
        long limit = requestTimeout.toNanos();
        for (Client c : live) {
            Phase p = c.phase;
            if (p == Phase.HANDLING || (c.cut && p == Phase.WAITING) || now - c.since <= limit) continue;
            log.info("control client {} for more than {} ms: cutting it",
                    p == Phase.WAITING ? "sent no whole request" : "took no answer", requestTimeout.toMillis());
            c.cut(p == Phase.WRITING);
        }
    }

    /** Serves one client until it hangs up, misbehaves, runs out of time, or the server closes. */
    private void serve(Client client) {
        SocketChannel c = client.ch;
        try (c) {
            int uid = peerUid(c);
            if (!uidAllowed.test(uid)) {
                log.warn("control request from uid {} refused: not allowed", uid);
                // Take the client's first request (size-capped) before answering, so that the
                // answer is not lost to a broken pipe on the client's side of the write.
                // A peer that sends nothing stops being waited for after a moment (its input is
                // shut, the read ends), gets the answer anyway and cannot hold a slot.
                ScheduledFuture<?> cut = timeouts.schedule(() -> client.cut(false),
                        Math.min(REFUSED_READ_TIMEOUT_MS, requestTimeout.toMillis()), TimeUnit.MILLISECONDS);
                try {
                    Framing.read(Channels.newInputStream(c), Request.parser());
                } catch (IOException ignored) {
                    // whatever it sent, it is refused
                } finally {
                    cut.cancel(false);
                }
                client.enter(Phase.WRITING);
                reply(c, error(Response.Code.NOT_ALLOWED, "uid " + uid + " is not allowed to control bowd"
                        + " (allowed: root, the daemon's own user, and --allow-uid)"));
                return;
            }
            InputStream in = Channels.newInputStream(c);
            OutputStream out = Channels.newOutputStream(c);
            while (true) {
                client.enter(Phase.WAITING);
                if (closed) return;   // close() shuts the input of waiting clients; this catches the rest
                Request req;
                try {
                    req = Framing.read(in, Request.parser());
                } catch (IOException e) {
                    client.enter(Phase.WRITING);
                    Framing.write(out, error(Response.Code.BAD_REQUEST, client.cut
                            ? "no whole request within " + requestTimeout.toMillis() + " ms" : "malformed request: " + e.getMessage()));
                    return;
                }
                if (req == null) return;
                client.enter(Phase.HANDLING);
                Response resp = handle(req);
                client.enter(Phase.WRITING);
                Framing.write(out, resp);
                if (req.getKindCase() == Request.KindCase.SHUTDOWN && resp.getCode() == Response.Code.OK) {
                    // Only now that the answer is out: the daemon's stop closes this server.
                    Thread t = new Thread(shutdown, "control-shutdown");
                    t.start();
                    return;
                }
                if (resp.getCode() == Response.Code.BAD_REQUEST && req.getKindCase() == Request.KindCase.KIND_NOT_SET) {
                    return;   // an empty message is not a request: the client is out of step
                }
            }
        } catch (IOException e) {
            log.debug("control client gone: {}", LogText.of(e.toString()));
        }
    }

    /** Serves one already connected client on the calling thread (tests). */
    void serve(SocketChannel c) {
        Client client = new Client(c);
        live.add(client);
        try {
            serve(client);
        } finally {
            live.remove(client);
        }
    }

    private static int peerUid(SocketChannel c) throws IOException {
        UnixDomainPrincipal p = c.getOption(ExtendedSocketOptions.SO_PEERCRED);
        return LinuxNative.uidOf(p.user().getName());
    }

    private static void reply(SocketChannel c, Response r) {
        try {
            Framing.write(Channels.newOutputStream(c), r);
        } catch (IOException ignored) {
            // the client is gone; nothing to tell it
        }
    }

    /** Dispatches one request to the engine. Never throws. */
    Response handle(Request req) {
        try {
            return switch (req.getKindCase()) {
                case STATUS -> Response.newBuilder().setCode(Response.Code.OK).setStatus(status()).build();
                case START_CHECKPOINT -> {
                    engine.startCheckpoint();
                    yield ok("checkpoint started (" + engine.status().freeBytes() + " bytes free for backups)");
                }
                case COMMIT -> {
                    engine.commit();
                    yield ok("checkpoint committed");
                }
                case ROLLBACK -> {
                    engine.rollback();
                    yield ok("rolled back");
                }
                case RANGES -> {
                    RangesReply.Builder b = RangesReply.newBuilder();
                    int limit = req.getRanges().getLimit();
                    if (limit == 0) {   // an unpaged request: the whole table, if one reply holds it
                        for (ModeEngine.RangeRecord r : engine.ranges()) {
                            b.addRanges(Range.newBuilder().setOffset(r.offset()).setLength(r.length()).setType(r.type()));
                        }
                        if (b.build().getSerializedSize() > Framing.MAX_MESSAGE - 64) {
                            yield error(Response.Code.BAD_REQUEST, b.getRangesCount() + " ranges do not fit in one reply of "
                                    + Framing.MAX_MESSAGE + " bytes: ask for pages (RangesRequest.limit; bowctl ranges does)");
                        }
                        yield Response.newBuilder().setCode(Response.Code.OK).setRanges(b).build();
                    }
                    long from = req.getRanges().getFromOffset();
                    long last = from;
                    int page = Math.min(limit, ModeEngine.RANGES_PAGE);
                    for (ModeEngine.RangeRecord r : engine.ranges(from, page)) {
                        b.addRanges(Range.newBuilder().setOffset(r.offset()).setLength(r.length()).setType(r.type()));
                        last = r.offset() + r.length();
                    }
                    boolean more = b.getRangesCount() == page && last > from;   // a full page: ask again from its end
                    yield Response.newBuilder().setCode(Response.Code.OK).setRanges(b.setMore(more).setNextOffset(more ? last : 0)).build();
                }
                case TRIM -> {
                    BlockDevice dev = engine.exports().get("");
                    long off = req.getTrim().getOffset(), len = req.getTrim().getLength();
                    if (off % 512 != 0 || len % 512 != 0 || off < 0 || len < 0 || off + len > dev.size() || off + len < 0) {
                        yield error(Response.Code.BAD_REQUEST, "trim [" + off + ", +" + len + ") must be 512-byte aligned and inside the "
                                + dev.size() + "-byte device");
                    }
                    dev.discard(off, len);
                    yield ok("trimmed " + len + " bytes at " + off);
                }
                case SNAPSHOT_CREATE, SNAPSHOT_LIST, SNAPSHOT_DELETE, SNAPSHOT_ROLLBACK -> snapshotRequest(req);
                // The serving loop starts the shutdown once this answer is sent.
                case SHUTDOWN -> ok("shutting down");
                case KIND_NOT_SET -> error(Response.Code.BAD_REQUEST, "empty request");
            };
        } catch (IllegalStateException e) {
            return error(Response.Code.INVALID_STATE, e.getMessage());
        } catch (UnsupportedOperationException e) {
            return error(Response.Code.UNSUPPORTED, e.getMessage());
        } catch (IOException | RuntimeException e) {
            log.warn("control request {} failed: {}", req.getKindCase(), LogText.of(e.toString()));
            return error(Response.Code.ERROR, e.getMessage() == null ? e.toString() : e.getMessage());
        }
    }

    /**
     * The snapshot requests, for an engine with snapshots. The caller's own mistakes (a bad or
     * duplicate name, no such snapshot: IllegalArgumentException) are BAD_REQUEST, as a bad trim
     * range is; the limit of 64 and a running rollback (IllegalStateException) are INVALID_STATE.
     */
    private Response snapshotRequest(Request req) throws IOException {
        Optional<SnapshotEngine> found = engine.snapshots();
        if (found.isEmpty()) {
            return error(Response.Code.UNSUPPORTED, "only shared mode has snapshots; this daemon runs " + engine.mode() + " mode");
        }
        SnapshotEngine snaps = found.get();
        try {
            return switch (req.getKindCase()) {
                case SNAPSHOT_CREATE -> {
                    SnapshotCreateRequest c = req.getSnapshotCreate();
                    int id = snaps.createSnapshot(c.getName().isEmpty() ? null : c.getName(), c.getWritable());
                    yield Response.newBuilder().setCode(Response.Code.OK)
                            .setMessage("snapshot " + id + (c.getName().isEmpty() ? "" : " (" + c.getName() + ")") + " created"
                                    + (c.getWritable() ? ", writable" : ""))
                            .setSnapshotCreated(SnapshotCreateReply.newBuilder().setId(id)).build();
                }
                case SNAPSHOT_LIST -> {
                    SnapshotListReply.Builder b = SnapshotListReply.newBuilder();
                    for (SnapshotEngine.SnapshotInfo i : snaps.listSnapshots()) {
                        b.addSnapshots(bow.proto.SnapshotInfo.newBuilder().setId(i.id()).setName(i.name() == null ? "" : i.name())
                                .setCreatedMillis(i.createdMillis()).setWritable(i.writable())
                                .setChunksAlone(i.chunksAlone()).setChunksShared(i.chunksShared()));
                    }
                    SnapshotEngine.StoreUsage u = snaps.usage();
                    b.setChunkBytes(u.chunkBytes()).setFreeChunks(u.freeChunks()).setTotalChunks(u.totalChunks());
                    yield Response.newBuilder().setCode(Response.Code.OK).setSnapshotList(b).build();
                }
                case SNAPSHOT_DELETE -> {
                    String which = req.getSnapshotDelete().getSnapshot();
                    if (which.isEmpty()) yield error(Response.Code.BAD_REQUEST, "which snapshot? (an ID or a name)");
                    snaps.deleteSnapshot(which);
                    yield ok("snapshot " + which + " deleted");
                }
                case SNAPSHOT_ROLLBACK -> {
                    String which = req.getSnapshotRollback().getSnapshot();
                    if (which.isEmpty()) yield error(Response.Code.BAD_REQUEST, "which snapshot? (an ID or a name)");
                    snaps.rollbackTo(which);
                    yield ok("rollback of the origin to snapshot " + which + " started (progress: bowctl status)");
                }
                default -> throw new IllegalStateException("not a snapshot request: " + req.getKindCase());
            };
        } catch (IllegalArgumentException e) {
            return error(Response.Code.BAD_REQUEST, e.getMessage());
        }
    }

    private StatusReply status() {
        ModeEngine.EngineStatus s = engine.status();
        return StatusReply.newBuilder()
                .setMode(s.mode()).setState(s.state()).setDevice(s.device()).setSize(s.deviceSize())
                .setBlockSize(s.blockSize()).setFreeBytes(s.freeBytes()).setBackedUpBytes(s.backedUpBytes())
                .setLogSequence(s.logSequence()).setLogEntries(s.logEntries()).setRangeCount(s.rangeCount())
                .setNbdConnections(nbdConnections.getAsInt()).putAllDetails(s.details())
                .build();
    }

    private static Response ok(String message) {
        return Response.newBuilder().setCode(Response.Code.OK).setMessage(message).build();
    }

    private static Response error(Response.Code code, String message) {
        return Response.newBuilder().setCode(code).setMessage(message == null ? code.name() : message).build();
    }

    /**
     * Stops accepting, removes the socket, lets handlers inside the engine finish and
     * send their answers (bounded wait), and ends the waiting ones by shutting their
     * input. Never interrupts a handler.
     */
    @Override
    public void close() throws IOException {
        if (closed) return;
        closed = true;
        try {
            if (listener != null) listener.close();
        } finally {
            if (socketPath != null) Files.deleteIfExists(socketPath);
            for (Client c : live) {
                if (c.phase == Phase.WAITING) c.cut(false);
            }
            clients.shutdown();
            try {
                // The deadline task still runs meanwhile: a client that takes no answer is cut.
                if (!clients.awaitTermination(CLOSE_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                    log.warn("control requests still running {} s after close; leaving them to finish", CLOSE_TIMEOUT.toSeconds());
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                timeouts.shutdown();
            }
        }
    }
}
