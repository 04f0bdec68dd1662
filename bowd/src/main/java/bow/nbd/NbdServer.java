package bow.nbd;

import bow.blockdev.BlockDevice;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * An NBD server (fixed newstyle handshake) that serves {@link BlockDevice}s by
 * export name; the name "" is the default export. The exports are a fixed map, or a live
 * source asked at each handshake (shared mode: snapshots come and go while the daemon runs).
 *
 * <p>Listens on Unix sockets and loopback TCP addresses, or serves one already
 * connected channel (socket activation, {@code System.inheritedChannel()}).
 * Each connection has a reader thread (handshake, requests) and a writer thread
 * (replies); device requests run on a small pool shared by all connections, so
 * requests on one connection run concurrently and may complete out of order.
 * The server never closes the devices: their owner does, after {@link #close()}.
 */
public final class NbdServer implements Closeable {
    private static final Logger log = LoggerFactory.getLogger(NbdServer.class);

    /** Settings of a server; the defaults suit a local daemon. */
    public static final class Options {
        boolean readOnly;
        final Set<String> readOnlyExports = new HashSet<>();
        final Map<String, String> descriptions = new HashMap<>();
        java.util.function.Function<String, String> describeOthers = name -> null;
        // Requests mostly wait (on the device, or on a group commit in the engine), so threads
        // are counted for the in-flight window of several connections, not for the CPUs: a write
        // waiting for its backup to be durable must not keep the next one from joining the group.
        int workers = 256;
        int maxInFlightRequests = 64;
        int maxInFlightBytes = 64 << 20;
        int minimumBlockSize = 512;
        int preferredBlockSize = 4096;
        int maximumPayload = 32 << 20;
        Duration closeTimeout = Duration.ofSeconds(30);
        int maxConnections = 256;
        boolean anyTcpAddress;
        Duration clientTimeout = DEFAULT_CLIENT_TIMEOUT;
        long maxRequestMemory = defaultRequestMemory();

        /** Every export read-only. */
        public Options readOnly(boolean v) { readOnly = v; return this; }
        /** One export read-only. */
        public Options readOnlyExport(String name) { readOnlyExports.add(Objects.requireNonNull(name)); return this; }
        /** Text sent as NBD_INFO_DESCRIPTION for an export. */
        public Options description(String export, String text) { descriptions.put(export, text); return this; }
        /** The description of an export with none of its own (live exports, whose names are not known up front). */
        public Options describeOthers(java.util.function.Function<String, String> f) { describeOthers = Objects.requireNonNull(f); return this; }
        /**
         * Request threads, all connections together, beyond each connection's own thread: a
         * connection serves up to {@link #maxInFlightRequests} requests at once on threads of
         * its own (each reads a request, runs it and sends its reply), started as its requests
         * overlap, while this budget lasts.
         */
        public Options workers(int n) { workers = positive(n, "workers"); return this; }
        /** Requests one connection may have in flight before the server stops reading from it. */
        public Options maxInFlightRequests(int n) { maxInFlightRequests = positive(n, "maxInFlightRequests"); return this; }
        /** Read/write payload bytes one connection may hold in flight; at least the maximum payload. */
        public Options maxInFlightBytes(int n) { maxInFlightBytes = positive(n, "maxInFlightBytes"); return this; }
        /** Block sizes advertised in NBD_INFO_BLOCK_SIZE; the maximum is also the largest read/write accepted. */
        public Options blockSizes(int minimum, int preferred, int maximumPayload) {
            if (Integer.bitCount(minimum) != 1 || minimum > 65536 || Integer.bitCount(preferred) != 1
                    || preferred < minimum || maximumPayload < preferred || maximumPayload % minimum != 0) {
                throw new IllegalArgumentException("bad block sizes: min " + minimum + ", preferred " + preferred
                        + ", max " + maximumPayload + " (powers of two, min <= 64 KiB, min <= preferred <= max)");
            }
            this.minimumBlockSize = minimum;
            this.preferredBlockSize = preferred;
            this.maximumPayload = maximumPayload;
            return this;
        }
        /**
         * Connections served at once. At the limit a new connection makes room by closing the
         * one still in its handshake, or else the one idle the longest (nothing in flight);
         * only when every connection is busy is the new one closed right after accept.
         */
        public Options maxConnections(int n) { maxConnections = positive(n, "maxConnections"); return this; }
        /**
         * Deadline for a client: the whole handshake, a request once its first byte arrived
         * (header, then payload), and a reply the client does not take (no progress). Past it
         * the connection is closed. Idle connections between requests have no deadline.
         */
        public Options clientTimeout(Duration d) {
            if (d.isNegative() || d.isZero()) throw new IllegalArgumentException("client timeout must be positive, got " + d);
            clientTimeout = d;
            return this;
        }
        /**
         * Request payload bytes (write data received, read data to send) held in memory by all
         * connections together. A request past the budget waits up to the client timeout, then
         * fails with ENOMEM. At least the maximum payload.
         */
        public Options maxRequestMemory(long bytes) {
            if (bytes <= 0) throw new IllegalArgumentException("maxRequestMemory must be positive, got " + bytes);
            maxRequestMemory = bytes;
            return this;
        }
        /** Allow TCP listeners on non-loopback addresses (NBD has no authentication: the operator's choice). */
        public Options anyTcpAddress(boolean v) { anyTcpAddress = v; return this; }
        /** How long {@link NbdServer#close()} waits for connections to finish before cutting them. */
        public Options closeTimeout(Duration d) { closeTimeout = Objects.requireNonNull(d); return this; }

        private static int positive(int n, String what) {
            if (n <= 0) throw new IllegalArgumentException(what + " must be positive, got " + n);
            return n;
        }
    }

    /** Default of {@link Options#clientTimeout}. */
    public static final Duration DEFAULT_CLIENT_TIMEOUT = Duration.ofSeconds(10);

    /** A quarter of the heap, at least 64 MiB: the default of {@link Options#maxRequestMemory}. */
    public static long defaultRequestMemory() {
        return Math.max(64L << 20, Runtime.getRuntime().maxMemory() / 4);
    }

    /** Largest slice of a payload handed to one socket or device call (keeps the JDK's per-thread direct copies small). */
    static final int IO_SLICE = 1 << 20;

    /** One served device with what the handshake tells about it. */
    record Export(String name, BlockDevice device, boolean readOnly, String description) {}

    /** The exports when they are fixed, else null. */
    private final Map<String, Export> fixed;
    /** The live source of the exports and of the names a client may only read, when not fixed. */
    private final java.util.function.Supplier<Map<String, BlockDevice>> liveDevices;
    private final java.util.function.Supplier<Set<String>> liveReadOnly;
    final Options options;
    /** Request threads beyond each connection's own one, shared by all connections ({@link Options#workers}). */
    private final Semaphore requestThreads;
    private final AtomicInteger requestThreadIds = new AtomicInteger();
    /** Direct payload buffers kept for reuse, by size class (powers of two up to {@link #IO_SLICE}). */
    @SuppressWarnings("unchecked")
    private final java.util.concurrent.ConcurrentLinkedQueue<ByteBuffer>[] pool = new java.util.concurrent.ConcurrentLinkedQueue[21];
    private final AtomicLong pooledBytes = new AtomicLong();
    private final List<ServerSocketChannel> listeners = Collections.synchronizedList(new ArrayList<>());
    private final List<Path> socketFiles = Collections.synchronizedList(new ArrayList<>());
    private final List<Thread> acceptThreads = Collections.synchronizedList(new ArrayList<>());
    private final Set<NbdConnection> connections = ConcurrentHashMap.newKeySet();
    private final AtomicInteger openConnections = new AtomicInteger();
    private final AtomicLong connectionIds = new AtomicLong();
    final LongAdder bytesRead = new LongAdder();
    final LongAdder bytesWritten = new LongAdder();
    private volatile boolean closing;
    /** The daemon-wide payload budget, in KiB (a Semaphore counts ints). */
    private final Semaphore memory;
    private final AtomicLong payloadBytes = new AtomicLong();
    private final AtomicLong peakPayloadBytes = new AtomicLong();
    private final LongAdder memoryRefusals = new LongAdder();
    private final ScheduledExecutorService deadlines;

    public NbdServer(Map<String, BlockDevice> devices, Options options) {
        this(Objects.requireNonNull(devices), null, null, options);
    }

    /**
     * A server whose exports are asked for at each handshake (NBD_OPT_GO, INFO, EXPORT_NAME,
     * LIST), and again for the flush at {@link #close()}. A connection keeps the device it chose.
     *
     * @param readOnly names a client may only read, besides those of the options
     */
    public NbdServer(java.util.function.Supplier<Map<String, BlockDevice>> devices,
                     java.util.function.Supplier<Set<String>> readOnly, Options options) {
        this(null, Objects.requireNonNull(devices), Objects.requireNonNull(readOnly), options);
    }

    private NbdServer(Map<String, BlockDevice> fixedDevices, java.util.function.Supplier<Map<String, BlockDevice>> live,
                      java.util.function.Supplier<Set<String>> liveReadOnly, Options options) {
        this.options = Objects.requireNonNull(options);
        if ((fixedDevices != null ? fixedDevices : live.get()).isEmpty()) throw new IllegalArgumentException("no exports to serve");
        if (options.maxInFlightBytes < options.maximumPayload) {
            throw new IllegalArgumentException("maxInFlightBytes " + options.maxInFlightBytes
                    + " is below the maximum payload " + options.maximumPayload);
        }
        if (options.maxRequestMemory < options.maximumPayload) {
            throw new IllegalArgumentException("maxRequestMemory " + options.maxRequestMemory
                    + " is below the maximum payload " + options.maximumPayload);
        }
        this.memory = new Semaphore((int) Math.min(Integer.MAX_VALUE, options.maxRequestMemory >> 10), true);
        this.liveDevices = live;
        this.liveReadOnly = liveReadOnly;
        if (fixedDevices != null) {
            Map<String, Export> m = new TreeMap<>();
            for (Map.Entry<String, BlockDevice> e : fixedDevices.entrySet()) {
                String name = Objects.requireNonNull(e.getKey(), "export name");
                String bad = nameError(name);
                if (bad != null) throw new IllegalArgumentException(bad);
                m.put(name, toExport(name, Objects.requireNonNull(e.getValue(), "device of " + name), Set.of()));
            }
            this.fixed = Collections.unmodifiableMap(m);
        } else {
            this.fixed = null;
        }
        this.requestThreads = new Semaphore(options.workers);
        ScheduledThreadPoolExecutor d = new ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "nbd-deadlines");
            t.setDaemon(true);
            return t;
        });
        long tick = Math.max(10, Math.min(1000, options.clientTimeout.toMillis() / 8));
        long limit = options.clientTimeout.toNanos();
        d.scheduleWithFixedDelay(() -> {
            long now = System.nanoTime();
            for (NbdConnection c : connections) c.enforceDeadline(now, limit);
        }, tick, tick, TimeUnit.MILLISECONDS);
        this.deadlines = d;
    }

    private static int kib(long bytes) { return (int) ((bytes + 1023) >> 10); }

    /**
     * Takes {@code bytes} of the daemon-wide payload budget, waiting up to {@code nanos};
     * false if the budget stayed exhausted. Taken before a payload buffer is allocated.
     */
    boolean acquireMemory(long bytes, long nanos) {
        if (bytes == 0) return true;
        try {
            if (memory.tryAcquire(kib(bytes), nanos, TimeUnit.NANOSECONDS)) return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        memoryRefusals.increment();
        return false;
    }

    /**
     * A payload buffer of {@code n} bytes, whose budget the caller holds. Up to {@link #IO_SLICE}
     * it is a direct buffer, reused from request to request, so that socket and device I/O on it
     * need no copy through a temporary direct buffer; larger payloads are heap buffers, moved in
     * slices. Give it back with {@link #recycle}.
     */
    ByteBuffer allocatePayload(int n) {
        long now = payloadBytes.addAndGet(n);
        peakPayloadBytes.accumulateAndGet(now, Math::max);
        if (n <= 0 || n > IO_SLICE) return ByteBuffer.allocate(n);
        int cls = 32 - Integer.numberOfLeadingZeros(Math.max(n, MIN_POOLED) - 1);
        java.util.concurrent.ConcurrentLinkedQueue<ByteBuffer> q = pool[cls];
        ByteBuffer b = q == null ? null : q.poll();
        if (b != null) pooledBytes.addAndGet(-b.capacity());
        else b = ByteBuffer.allocateDirect(1 << cls);
        return b.clear().limit(n);
    }

    /** Takes a buffer from {@link #allocatePayload} back for reuse (direct ones only, up to {@link #MAX_POOLED}). */
    void recycle(ByteBuffer b) {
        if (b == null || !b.isDirect()) return;
        int cls = Integer.numberOfTrailingZeros(b.capacity());
        if (pooledBytes.addAndGet(b.capacity()) > MAX_POOLED) {
            pooledBytes.addAndGet(-b.capacity());
            return;   // dropped: the GC frees it
        }
        java.util.concurrent.ConcurrentLinkedQueue<ByteBuffer> q = pool[cls];
        if (q == null) {
            synchronized (pool) {
                if (pool[cls] == null) pool[cls] = new java.util.concurrent.ConcurrentLinkedQueue<>();
                q = pool[cls];
            }
        }
        q.add(b);
    }

    /** Smallest pooled buffer; payloads below it take one of this size. */
    static final int MIN_POOLED = 4096;
    /** Direct buffers kept for reuse, all sizes together. */
    static final long MAX_POOLED = 16 << 20;

    /** A thread beyond a connection's own may serve its requests; false when all {@link Options#workers} are taken. */
    boolean tryReserveRequestThread() { return requestThreads.tryAcquire(); }

    void releaseRequestThread() { requestThreads.release(); }

    int nextRequestThreadId() { return requestThreadIds.incrementAndGet(); }

    /** Gives back budget taken by {@link #acquireMemory}; {@code allocated} of it became a buffer that is now dropped. */
    void releaseMemory(long bytes, long allocated) {
        if (allocated > 0) payloadBytes.addAndGet(-allocated);
        if (bytes > 0) memory.release(kib(bytes));
    }

    /** Payload bytes allocated for requests in flight now. */
    public long payloadBytesHeld() { return payloadBytes.get(); }

    /** The most payload bytes ever held at once (never above the budget). */
    public long peakPayloadBytes() { return peakPayloadBytes.get(); }

    /** Requests refused with ENOMEM because the payload budget stayed exhausted for the client timeout. */
    public long memoryRefusals() { return memoryRefusals.sum(); }

    /** A server for one device as the default export. */
    public NbdServer(BlockDevice device, Options options) {
        this(Map.of("", device), options);
    }

    private static String nameError(String name) {
        if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING) return "export name longer than 4096 bytes";
        if (name.indexOf('\0') >= 0) return "export name contains NUL";
        return null;
    }

    private Export toExport(String name, BlockDevice device, Set<String> liveRo) {
        boolean ro = options.readOnly || options.readOnlyExports.contains(name) || liveRo.contains(name);
        String description = options.descriptions.get(name);
        return new Export(name, device, ro, description != null ? description : options.describeOthers.apply(name));
    }

    /** The exports now, by name in a stable order. */
    private Map<String, Export> exports() {
        if (fixed != null) return fixed;
        Map<String, Export> m = new TreeMap<>();
        Map<String, BlockDevice> devices;
        Set<String> ro;
        try {
            devices = liveDevices.get();
            ro = liveReadOnly.get();
        } catch (RuntimeException e) {
            log.warn("the exports could not be listed: {}", LogText.of(e.toString()));
            return m;
        }
        for (Map.Entry<String, BlockDevice> e : devices.entrySet()) {
            if (e.getKey() == null || e.getValue() == null || nameError(e.getKey()) != null) continue;
            m.put(e.getKey(), toExport(e.getKey(), e.getValue(), ro));
        }
        return m;
    }

    Export export(String name) { return exports().get(name); }

    /** Export names in a stable order. */
    List<String> exportNames() { return new ArrayList<>(exports().keySet()); }

    boolean isClosing() { return closing; }

    /**
     * Listens on a Unix socket at {@code path}. A stale socket file there is
     * replaced; any other existing file is an error.
     */
    public void listenUnix(Path path) throws IOException {
        checkOpen();
        if (Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            if (Files.isRegularFile(path) || Files.isDirectory(path)) {
                throw new IOException(path + " exists and is not a socket");
            }
            Files.delete(path);
        }
        ServerSocketChannel ssc = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ssc.bind(UnixDomainSocketAddress.of(path));
        } catch (IOException e) {
            ssc.close();
            throw new IOException("cannot listen on " + path + ": " + e.getMessage(), e);
        }
        socketFiles.add(path);
        startAccepting(ssc, "unix:" + path);
    }

    /**
     * Listens on a loopback TCP address (port 0 picks a free port) and returns
     * the bound address. NBD has no authentication here, so other addresses are refused
     * unless {@link Options#anyTcpAddress} allows them.
     */
    public InetSocketAddress listenTcp(InetSocketAddress address) throws IOException {
        checkOpen();
        if (address.getAddress() == null || (!address.getAddress().isLoopbackAddress() && !options.anyTcpAddress)) {
            throw new IllegalArgumentException("NBD over TCP is only offered on loopback, not " + address);
        }
        ServerSocketChannel ssc = ServerSocketChannel.open(address.getAddress() instanceof java.net.Inet6Address
                ? StandardProtocolFamily.INET6 : StandardProtocolFamily.INET);
        try {
            ssc.bind(address);
        } catch (IOException e) {
            ssc.close();
            throw new IOException("cannot listen on " + address + ": " + e.getMessage(), e);
        }
        InetSocketAddress bound = (InetSocketAddress) ssc.getLocalAddress();
        startAccepting(ssc, "tcp:" + bound);
        return bound;
    }

    /**
     * Accepts connections on a listening channel made elsewhere (socket
     * activation: {@link SocketActivation#listener()}). Closed by {@link #close()}.
     */
    public void listen(ServerSocketChannel listener) {
        checkOpen();
        String where;
        try {
            where = "inherited:" + listener.getLocalAddress();
        } catch (IOException e) {
            where = "inherited";
        }
        startAccepting(listener, where);
    }

    /**
     * Serves one already connected channel (e.g. {@code System.inheritedChannel()})
     * on the calling thread; returns when that connection ends.
     */
    public void serve(SocketChannel channel) {
        if (closing) {
            closeQuietly(channel);
            throw new IllegalStateException("server is closed");
        }
        newConnection(channel, "channel").run();
    }

    private void startAccepting(ServerSocketChannel ssc, String where) {
        listeners.add(ssc);
        Thread t = new Thread(() -> acceptLoop(ssc, where), "nbd-accept-" + where);
        t.setDaemon(true);
        acceptThreads.add(t);
        t.start();
        log.info("NBD server listening on {} ({} export(s){})", where, exports().size(), fixed == null ? " now; they follow the snapshots" : "");
    }

    private void acceptLoop(ServerSocketChannel ssc, String where) {
        while (!closing) {
            SocketChannel ch;
            try {
                ch = ssc.accept();
            } catch (ClosedChannelException e) {
                break;
            } catch (IOException e) {
                if (closing) break;
                log.warn("accept on {} failed: {}", where, e.toString());
                continue;
            }
            if (closing) {
                closeQuietly(ch);
                break;
            }
            // Each connection costs two threads; past the limit an idle one makes room, or the newcomer is turned away.
            if (!makeRoom()) {
                log.warn("refusing a connection on {}: {} open, all busy", where, options.maxConnections);
                closeQuietly(ch);
                continue;
            }
            NbdConnection c = newConnection(ch, where);
            Thread t = new Thread(c, "nbd-conn-" + c.id);
            t.setDaemon(true);
            t.start();
        }
    }

    private NbdConnection newConnection(SocketChannel ch, String where) {
        NbdConnection c = new NbdConnection(this, ch, connectionIds.incrementAndGet(), where);
        connections.add(c);
        openConnections.incrementAndGet();
        return c;
    }

    /**
     * True if a new connection may be served: below the limit, or after closing a
     * connection still in its handshake, else the one idle the longest.
     */
    private boolean makeRoom() {
        long served = connections.stream().filter(c -> !c.isEvicted()).count();
        if (served < options.maxConnections) return true;
        NbdConnection victim = connections.stream().filter(NbdConnection::isEvictable)
                .min(java.util.Comparator.comparing((NbdConnection c) -> !c.inHandshake())
                        .thenComparingLong(NbdConnection::lastActive))
                .orElse(null);
        if (victim == null) return false;
        log.info("connection limit ({}) reached: closing connection {} ({} for {} ms) to make room",
                options.maxConnections, victim.id, victim.inHandshake() ? "in handshake" : "idle",
                TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - victim.lastActive()));
        victim.evict();
        return true;
    }

    void connectionEnded(NbdConnection c) {
        if (connections.remove(c)) openConnections.decrementAndGet();
    }

    /** Connections currently open (handshake or transmission). */
    public int openConnections() { return openConnections.get(); }

    /** Bytes returned to clients by reads since start. */
    public long bytesRead() { return bytesRead.sum(); }

    /** Bytes written by clients since start. */
    public long bytesWritten() { return bytesWritten.sum(); }

    private void checkOpen() {
        if (closing) throw new IllegalStateException("server is closed");
    }

    /**
     * Stops accepting, stops reading new requests, lets requests in flight finish
     * and their replies go out, then flushes every device. Connections still busy
     * after the close timeout are cut.
     */
    @Override
    public void close() {
        if (closing) return;
        closing = true;
        synchronized (listeners) {
            for (ServerSocketChannel ssc : listeners) closeQuietly(ssc);
        }
        synchronized (socketFiles) {
            for (Path p : socketFiles) {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    log.warn("cannot remove socket {}: {}", p, e.toString());
                }
            }
        }
        for (NbdConnection c : connections) c.stopReading();
        long deadline = System.nanoTime() + options.closeTimeout.toNanos();
        for (NbdConnection c : connections) {
            long left = deadline - System.nanoTime();
            if (!c.awaitEnd(Math.max(0, left))) {
                log.warn("connection {} still busy after {}; cutting it", c.id, options.closeTimeout);
                c.abort();
            }
        }
        for (NbdConnection c : connections) c.awaitEnd(TimeUnit.SECONDS.toNanos(5));
        deadlines.shutdown();
        // Request threads belong to their connection and end before it does (awaitEnd above).
        // Writes acknowledged without a flush become durable now.
        Set<BlockDevice> flushed = Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        // (live exports: those of now; a deleted snapshot's device is the engine's business)
        for (Export e : exports().values()) {
            if (e.readOnly() || !flushed.add(e.device())) continue;
            try {
                e.device().flush();
            } catch (IOException | RuntimeException ex) {
                log.error("flush of export '{}' at close failed: {}", e.name(), ex.toString());
            }
        }
        log.info("NBD server closed");
    }

    static void closeQuietly(java.nio.channels.Channel c) {
        try {
            c.close();
        } catch (IOException ignored) {
            // closing anyway
        }
    }

    /** Exports with their read-only flag, for status output. */
    public Map<String, Boolean> exportsReadOnly() {
        Map<String, Boolean> m = new LinkedHashMap<>();
        exports().forEach((k, v) -> m.put(k, v.readOnly()));
        return m;
    }
}
