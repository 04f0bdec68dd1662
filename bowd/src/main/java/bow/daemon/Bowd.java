package bow.daemon;

import bow.blockdev.BlockDevice;
import bow.blockdev.CountingDevice;
import bow.blockdev.FileBlockDevice;
import bow.bowmode.BowEngine;
import bow.bowmode.CheckpointPresentException;
import bow.engine.ModeEngine;
import bow.lifecycle.CheckpointRecord;
import bow.lifecycle.LowSpacePolicy;
import bow.nbd.SocketActivation;
import bow.shared.SharedEngine;
import bow.shared.SharedFormat;
import bow.snapshot.PersistentEngine;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code bowd}: serves a device through one of the mode engines over NBD, controlled by bowctl. */
@Command(name = "bowd", mixinStandardHelpOptions = true, versionProvider = BowVersion.class, sortOptions = false,
        description = {"Serve a block device over NBD so that its changes can be checkpointed, committed or rolled back.",
                "With no --device, serves a default 1 GiB sparse image (created on first use) at $BOW_HOME/default.img "
                        + "(BOW_HOME defaults to /var/lib/bow)."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:stopped cleanly (bowctl shutdown, SIGTERM or SIGINT)", "1:failed to start or serve",
                "2:usage error", "3:the device still carries a checkpoint log (see the message; --force or --resume)"})
public final class Bowd implements Callable<Integer> {
    private static final Logger log = LoggerFactory.getLogger(Bowd.class);
    static final long DEFAULT_IMAGE_SIZE = 1L << 30;
    private static final long MAX_REQUEST = 32L << 20;

    @Option(names = "--mode", defaultValue = "bow", paramLabel = "bow|persistent|shared",
            description = "Where old data goes: bow (free space of the device itself, default), persistent (a COW device, dm-snapshot format, one snapshot) "
                    + "or shared (a COW device holding up to 64 snapshots that share their chunks; bowctl snapshot creates them).")
    String mode;

    @Option(names = "--device", paramLabel = "PATH", description = "Block device or image file to serve (default: $BOW_HOME/default.img).")
    Path device;

    @Option(names = "--cow", paramLabel = "PATH", description = "persistent and shared modes: the COW device or file (shared: a blank one is formatted at the first snapshot).")
    Path cow;

    @Option(names = "--block-size", defaultValue = "4096", paramLabel = "BYTES",
            description = "bow mode: block size, a power of two from 512 to 4096 (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--chunk-size", defaultValue = "0", paramLabel = "SECTORS",
            description = "persistent and shared modes: chunk size in 512-byte sectors, a power of two (default 32; the chunk size of a COW that holds a store wins). "
                    + "shared: 8 to 2048.")
    int chunkSize;

    @Option(names = "--overflow", description = "persistent mode: a full COW fails snapshot writes with ENOSPC instead of invalidating the snapshot.")
    boolean overflow;

    @Option(names = "--snapshot-writable", description = "persistent mode: the 'snapshot' export accepts writes.")
    boolean snapshotWritable;

    @Option(names = "--socket", paramLabel = "PATH", description = "NBD Unix socket (default: /run/bow/nbd.sock, or $BOW_RUN/nbd.sock; none by default when started by socket activation).")
    Path socket;

    @Option(names = "--tcp", paramLabel = "HOST:PORT", description = "Also serve NBD on this TCP address (loopback only, unless --tcp-any).")
    String tcp;

    @Option(names = "--tcp-any", description = "Allow --tcp on a non-loopback address. NBD has no authentication: anyone who reaches the port can read and write the device.")
    boolean tcpAny;

    @Option(names = "--export-name", paramLabel = "NAME", description = "Also offer the default export under this NBD export name (clients asking for the empty name still get it).")
    String exportName;

    @Option(names = "--stdin", description = "Serve one NBD connection on standard input, then exit (for tools that start a server as a command).")
    boolean stdin;

    @Option(names = "--control", paramLabel = "PATH", description = "Control socket for bowctl (default: /run/bow/control.sock, or $BOW_RUN/control.sock).")
    Path control;

    @Option(names = "--allow-uid", paramLabel = "UID", description = "Also allow this uid on the control socket (root and the daemon's own uid always are). Repeatable. "
                    + "The socket file is then mode 0666 (else 0600) and each peer's uid is checked (SO_PEERCRED).")
    List<Integer> allowUids = new ArrayList<>();

    @Option(names = "--force", description = "bow mode: serve a device that still carries a checkpoint log as a plain device (its block 0 is the log). Rarely what you want.")
    boolean force;

    @Option(names = "--free-map", paramLabel = "PATH",
            description = "bow mode: keep the ranges free at checkpoint start in this file (outside the device), and read them back with --resume, so that a resumed checkpoint has its free space again after fstrim.")
    Path freeMap;

    @Option(names = "--resume", description = "bow mode: continue the checkpoint the device carries (after a reboot during the update). Run fstrim after mounting to give it free space again.")
    boolean resume;

    @Option(names = "--low-space-threshold", paramLabel = "BYTES",
            description = "During a checkpoint, act once when the space left for backups (bow: free space; persistent: COW space) drops below BYTES. Off by default.")
    Long lowSpaceThreshold;

    @Option(names = "--low-space-action", defaultValue = "abort", paramLabel = "commit|abort",
            description = "What to do below the threshold: commit (keep the changes, drop the safety net and the checkpoint record) or "
                    + "abort (default: keep the checkpoint, refuse every further write with EIO, mark the record ROLLBACK_REQUESTED so the next boot rolls back).")
    String lowSpaceAction;

    @Option(names = "--record", paramLabel = "PATH",
            description = "The checkpoint record the low-space policy updates (default: $BOW_RECORD, else /var/lib/bow/checkpoint.rec).")
    Path record;

    @Option(names = "--client-timeout", defaultValue = "10", paramLabel = "SECONDS",
            description = "Deadline for a client: an NBD handshake, an NBD request once its first byte arrived (header and payload), "
                    + "an NBD reply the client does not take, a control request. Past it the connection is closed. Idle NBD connections have none (default ${DEFAULT-VALUE}).")
    int clientTimeoutSeconds;

    @Option(names = "--direct",
            description = "Open the device (and the COW device) with O_DIRECT: reads and writes bypass the page cache, so a flush "
                    + "does not write back unrelated cached data and bowd leaves the page cache to others. Reads are no longer "
                    + "cached either; unaligned requests are bounced and read-modify-written. Off by default (see README, \"--direct\").")
    boolean direct;

    @Option(names = "--max-request-memory", paramLabel = "BYTES",
            description = "NBD request payloads (write data received, read data to send) held in memory by all connections together; "
                    + "a request past it waits up to --client-timeout, then fails with ENOMEM. At least 33554432 (the largest request). "
                    + "Default: a quarter of the Java heap, at least 64 MiB.")
    Long maxRequestMemory;

    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    private final List<BlockDevice> opened = new ArrayList<>();
    private final java.util.Map<String, CountingDevice> counters = new java.util.LinkedHashMap<>();

    @Override
    public Integer call() throws Exception {
        java.io.PrintWriter err = spec.commandLine().getErr();
        Path home = Path.of(env("BOW_HOME", "/var/lib/bow"));
        Path run = Path.of(env("BOW_RUN", "/run/bow"));
        if (device == null) {
            device = home.resolve("default.img");
            if (!Files.exists(device)) {
                FileBlockDevice.createSparse(device, DEFAULT_IMAGE_SIZE);
                log.info("created the default image {} (1 GiB, sparse)", device);
            }
        }
        // Socket activation (LISTEN_FDS) hands over the NBD listener; then the default
        // Unix socket is not opened unless --socket asks for it.
        ServerSocketChannel activated = stdin ? null : SocketActivation.listener();
        if (socket == null && activated == null && !stdin) socket = run.resolve("nbd.sock");
        if (control == null) control = run.resolve("control.sock");
        LowSpacePolicy.Action lowSpace;
        try {
            lowSpace = LowSpacePolicy.parseAction(lowSpaceAction);
            if (lowSpaceThreshold != null && lowSpaceThreshold < 0) throw new IllegalArgumentException("--low-space-threshold must be >= 0");
            if (clientTimeoutSeconds <= 0) throw new IllegalArgumentException("--client-timeout must be at least 1 second");
            if (maxRequestMemory != null && maxRequestMemory < MAX_REQUEST) {
                throw new IllegalArgumentException("--max-request-memory must be at least " + MAX_REQUEST + " (the largest NBD request)");
            }
        } catch (IllegalArgumentException e) {
            err.println("bowd: " + e.getMessage());
            err.flush();
            return 2;
        }
        ModeEngine engine;
        try {
            engine = openEngine();
        } catch (CheckpointPresentException e) {
            err.println("bowd: " + e.getMessage());
            err.println("bowd: or start with --resume to continue the checkpoint (after a reboot during the update).");
            err.flush();
            closeDevices();
            return 3;
        } catch (IOException | IllegalArgumentException | UnsupportedOperationException e) {
            err.println("bowd: " + e.getMessage());
            err.flush();
            closeDevices();
            return 1;
        }
        engine = new PathDetailsEngine(engine, device, cow, counters);
        if (lowSpaceThreshold != null) {
            LowSpacePolicy policy = new LowSpacePolicy(engine, lowSpaceThreshold, lowSpace,
                    CheckpointRecord.resolve(record), device.toAbsolutePath().toString());
            engine = policy.guard();
            policy.start(200);
            log.info("low-space policy: {} below {} bytes free", lowSpaceAction, lowSpaceThreshold);
        }
        DaemonConfig config = new DaemonConfig(mode, device, cow, blockSize, chunkSize, overflow, snapshotWritable,
                socket, parseTcp(tcp), tcpAny, stdin, control, new HashSet<>(allowUids), exportName,
                java.time.Duration.ofSeconds(clientTimeoutSeconds),
                maxRequestMemory != null ? maxRequestMemory : bow.nbd.NbdServer.defaultRequestMemory());
        Daemon daemon;
        try {
            daemon = Daemon.create(engine, config);
        } catch (IllegalArgumentException e) {
            System.err.println("bowd: " + e.getMessage());
            engine.close();
            closeDevices();
            return 2;
        }
        // SIGTERM/SIGINT end the serving loop like "bowctl shutdown": the main thread then
        // stops everything in order and the process exits 0. The hook stays as a backstop.
        for (String sig : new String[] {"TERM", "INT"}) {
            sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> {
                log.info("SIG{} received: stopping", sig);
                daemon.requestStop();
                if (config.stdin()) daemon.stop();   // the one NBD connection ends; serve() returns
            });
        }
        Thread hook = new Thread(() -> {
            daemon.requestStop();
            daemon.stop();
            closeDevices();
        }, "bowd-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            daemon.start(activated);
            log.info("bowd serving {} in {} mode ({})", device, engine.mode(), engine.status().state());
            daemon.runUntilStopped();
        } catch (IOException e) {
            err.println("bowd: " + e.getMessage());
            err.flush();
            return 1;
        } finally {
            daemon.stop();
            closeDevices();
        }
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException ignored) {
            // already shutting down
        }
        return 0;
    }

    private ModeEngine openEngine() throws IOException {
        switch (mode) {
            case "bow" -> {
                if (cow != null) throw new IllegalArgumentException("--cow is for --mode persistent or shared");
                BlockDevice dev = counted(open(device), "device");
                String name = device.toString();
                if (resume) return BowEngine.resume(dev, name, freeMap);
                BowEngine eng = force ? BowEngine.openIgnoringLog(dev, name, blockSize) : BowEngine.open(dev, name, blockSize);
                return freeMap == null ? eng : eng.keepFreeMap(freeMap);
            }
            case "persistent" -> {
                if (cow == null) throw new IllegalArgumentException("--mode persistent needs --cow PATH");
                if (force || resume) throw new IllegalArgumentException("--force and --resume are for --mode bow");
                return PersistentEngine.open(counted(open(device), "device"), counted(open(cow), "cow"),
                        new PersistentEngine.Options(chunkSize, overflow, snapshotWritable));
            }
            case "shared" -> {
                checkSharedOptions();
                return SharedEngine.open(counted(open(device), "device"), counted(open(cow), "cow"), new SharedEngine.Options(chunkSize));
            }
            default -> throw new IllegalArgumentException("unknown --mode " + mode + " (bow, persistent or shared)");
        }
    }

    /** What shared mode takes, checked before any device is opened. */
    void checkSharedOptions() {
        if (cow == null) throw new IllegalArgumentException("--mode shared needs --cow PATH");
        List<String> refused = new ArrayList<>();
        if (overflow) refused.add("--overflow");
        if (snapshotWritable) refused.add("--snapshot-writable");
        if (force) refused.add("--force");
        if (resume) refused.add("--resume");
        if (freeMap != null) refused.add("--free-map");
        if (!refused.isEmpty()) {
            throw new IllegalArgumentException(String.join(", ", refused) + (refused.size() == 1 ? " is" : " are") + " not for --mode shared"
                    + (snapshotWritable ? " (a snapshot is made writable when it is created: bowctl snapshot create --writable)" : "")
                    + (overflow ? " (a full COW always fails the write that needs space with ENOSPC and keeps every snapshot)" : ""));
        }
        if (chunkSize != 0) {
            String bad = SharedFormat.chunkSizeError(chunkSize);
            if (bad != null) throw new IllegalArgumentException("--chunk-size " + chunkSize + ": " + bad
                    + " (shared mode: a power of two from " + SharedFormat.MIN_CHUNK_SECTORS + " to " + SharedFormat.MAX_CHUNK_SECTORS + " sectors)");
        }
    }

    /** The bottom device with its I/O counted, for the status details (io_flushes and the like). */
    private BlockDevice counted(FileBlockDevice d, String role) {
        CountingDevice c = new CountingDevice(d);
        counters.put(role, c);
        return c;
    }

    private FileBlockDevice open(Path p) throws IOException {
        FileBlockDevice d = FileBlockDevice.open(p, false, direct);
        opened.add(d);
        if (d.isDirect()) log.info("{}: O_DIRECT (--direct), requests aligned to {} bytes go straight to it", p, d.directAlignment());
        return d;
    }

    private synchronized void closeDevices() {
        for (BlockDevice d : opened) {
            try {
                d.close();
            } catch (IOException e) {
                log.warn("closing {}: {}", d, e.toString());
            }
        }
    }

    static InetSocketAddress parseTcp(String spec) throws IOException {
        if (spec == null) return null;
        int colon = spec.lastIndexOf(':');
        if (colon < 0) throw new IllegalArgumentException("--tcp wants HOST:PORT, got " + spec);
        String host = spec.substring(0, colon);
        int port = Integer.parseInt(spec.substring(colon + 1));
        return new InetSocketAddress(InetAddress.getByName(host.isEmpty() ? "127.0.0.1" : host), port);
    }

    private static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    public static void main(String[] args) {
        CommandLine cl = new CommandLine(new Bowd());
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            cmd.getErr().println("bowd: " + e.getMessage());
            return 1;
        });
        System.exit(cl.execute(args));
    }
}
