package bow.control;

import bow.blockdev.BlockDevice;
import bow.blockdev.LinuxNative;
import bow.engine.ModeEngine;
import bow.proto.Range;
import bow.proto.RangesReply;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.StatusReply;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

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
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntPredicate;
import java.util.function.IntSupplier;

/**
 * The control socket: protobuf requests from bowctl, each answered with a status
 * code and a readable message. Peers are checked by uid (SO_PEERCRED); the socket
 * file is created 0600. A malformed or oversized message gets an error and costs
 * only that connection.
 */
public final class ControlServer implements Closeable {
    private static final Logger log = LoggerFactory.getLogger(ControlServer.class);
    private static final int MAX_CLIENTS = 64;

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
    private final AtomicInteger active = new AtomicInteger();
    private ServerSocketChannel listener;
    private Path socketPath;
    private volatile boolean closed;

    /**
     * @param uidAllowed decides which peer uids may talk to the daemon (see {@link #defaultPolicy})
     * @param shutdown   run (on its own thread) when a client asks the daemon to stop
     */
    public ControlServer(ModeEngine engine, IntSupplier nbdConnections, IntPredicate uidAllowed, Runnable shutdown) {
        this.engine = engine;
        this.nbdConnections = nbdConnections;
        this.uidAllowed = uidAllowed;
        this.shutdown = shutdown;
    }

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
                if (active.incrementAndGet() > MAX_CLIENTS) {
                    active.decrementAndGet();
                    reply(c, error(Response.Code.ERROR, "too many control clients"));
                    c.close();
                    continue;
                }
                clients.execute(() -> {
                    try {
                        serve(c);
                    } finally {
                        active.decrementAndGet();
                    }
                });
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (!closed) log.warn("control accept failed: {}", e.toString());
            }
        }
    }

    /** Serves one client until it hangs up or misbehaves. */
    void serve(SocketChannel c) {
        try (c) {
            int uid = peerUid(c);
            if (!uidAllowed.test(uid)) {
                log.warn("control request from uid {} refused: not allowed", uid);
                // Take the client's first request (size-capped) before answering, so that the
                // answer is not lost to a broken pipe on the client's side of the write.
                // A peer that sends nothing stops being waited for after a moment (its input is
                // shut, the read ends), gets the answer anyway and cannot hold a slot.
                ScheduledFuture<?> cut = timeouts.schedule(() -> {
                    try {
                        c.shutdownInput();
                    } catch (IOException ignored) {
                        // the peer is gone already
                    }
                }, REFUSED_READ_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                try {
                    Framing.read(Channels.newInputStream(c), Request.parser());
                } catch (IOException ignored) {
                    // whatever it sent, it is refused
                } finally {
                    cut.cancel(false);
                }
                reply(c, error(Response.Code.NOT_ALLOWED, "uid " + uid + " is not allowed to control bowd"
                        + " (allowed: root, the daemon's own user, and --allow-uid)"));
                return;
            }
            InputStream in = Channels.newInputStream(c);
            OutputStream out = Channels.newOutputStream(c);
            while (true) {
                Request req;
                try {
                    req = Framing.read(in, Request.parser());
                } catch (IOException e) {
                    Framing.write(out, error(Response.Code.BAD_REQUEST, "malformed request: " + e.getMessage()));
                    return;
                }
                if (req == null) return;
                Response resp = handle(req);
                Framing.write(out, resp);
                if (resp.getCode() == Response.Code.BAD_REQUEST && req.getKindCase() == Request.KindCase.KIND_NOT_SET) {
                    return;   // an empty message is not a request: the client is out of step
                }
            }
        } catch (IOException e) {
            log.debug("control client gone: {}", e.toString());
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
                case SHUTDOWN -> {
                    Thread t = new Thread(shutdown, "control-shutdown");
                    t.start();
                    yield ok("shutting down");
                }
                case KIND_NOT_SET -> error(Response.Code.BAD_REQUEST, "empty request");
            };
        } catch (IllegalStateException e) {
            return error(Response.Code.INVALID_STATE, e.getMessage());
        } catch (UnsupportedOperationException e) {
            return error(Response.Code.UNSUPPORTED, e.getMessage());
        } catch (IOException | RuntimeException e) {
            log.warn("control request {} failed: {}", req.getKindCase(), e.toString());
            return error(Response.Code.ERROR, e.getMessage() == null ? e.toString() : e.getMessage());
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

    @Override
    public void close() throws IOException {
        closed = true;
        if (listener != null) listener.close();
        clients.shutdownNow();
        timeouts.shutdownNow();
        if (socketPath != null) Files.deleteIfExists(socketPath);
    }
}
