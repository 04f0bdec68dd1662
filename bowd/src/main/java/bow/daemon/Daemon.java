package bow.daemon;

import bow.blockdev.LinuxNative;
import bow.control.ControlServer;
import bow.engine.ModeEngine;
import bow.nbd.NbdServer;
import bow.nbd.SocketActivation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import javax.inject.Inject;
import java.io.IOException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.CountDownLatch;

/** A running bowd: the engine, its NBD export and its control socket, stopped together. */
public final class Daemon {
    private static final Logger log = LoggerFactory.getLogger(Daemon.class);

    /** Lets the control socket's "shutdown" end {@link #runUntilStopped()}. */
    static final class Stopper {
        private final CountDownLatch latch = new CountDownLatch(1);

        void stop() { latch.countDown(); }

        void await() throws InterruptedException { latch.await(); }
    }

    private final ModeEngine engine;
    private final DaemonConfig config;
    private final NbdServer nbd;
    private final ControlServer control;
    private final Stopper stopper;
    private boolean stopped;
    private SocketChannel stdinChannel;

    @Inject
    Daemon(ModeEngine engine, DaemonConfig config, NbdServer nbd, ControlServer control, Stopper stopper) {
        this.engine = engine;
        this.config = config;
        this.nbd = nbd;
        this.control = control;
        this.stopper = stopper;
    }

    public static Daemon create(ModeEngine engine, DaemonConfig config) {
        return DaggerDaemonComponent.builder().engine(engine).config(config).build().daemon();
    }

    /**
     * Opens the sockets. {@code activated} is a listener handed over by socket
     * activation (LISTEN_FDS, e.g. {@code nbdinfo -- [ bowd ]}), or null.
     */
    public void start(ServerSocketChannel activated) throws IOException {
        if (config.stdin()) {
            // Adopted before anything else asks for the inherited channel (computed once per JVM).
            stdinChannel = SocketActivation.connectedStdin();
            if (stdinChannel == null) {
                throw new IOException("--stdin: standard input is not a connected socket"
                        + (activated != null ? " (this parent uses socket activation: leave out --stdin)" : ""));
            }
        }
        // Allow-listed users must be able to open the socket file; the uid check still gates them.
        control.listen(config.controlSocket(), !config.allowUids().isEmpty());
        if (config.stdin()) return;
        if (activated != null) {
            nbd.listen(activated);
            log.info("NBD export on the socket-activation listener (descriptor 3)");
        }
        if (config.nbdSocket() != null) {
            // The export gives read and write access to the device: born 0600, like the control socket.
            int old = LinuxNative.umask(0077);
            try {
                nbd.listenUnix(config.nbdSocket());
            } finally {
                LinuxNative.umask(old);
            }
            log.info("NBD export on unix socket {}", config.nbdSocket());
        }
        if (config.tcp() != null) {
            log.info("NBD export on tcp {}", nbd.listenTcp(config.tcp()));
        }
    }

    /** Serves until SIGTERM, a control "shutdown", or (with --stdin) the one connection ends. */
    public void runUntilStopped() throws IOException, InterruptedException {
        if (config.stdin()) {
            nbd.serve(stdinChannel);
        } else {
            stopper.await();
        }
    }

    public void requestStop() { stopper.stop(); }

    /** In-flight requests finish, everything is flushed, sockets are removed. Idempotent. */
    public synchronized void stop() {
        if (stopped) return;
        stopped = true;
        log.info("stopping: finishing in-flight requests and flushing");
        nbd.close();
        try {
            control.close();
        } catch (IOException e) {
            log.warn("closing the control socket: {}", e.toString());
        }
        try {
            engine.close();
        } catch (IOException e) {
            log.error("closing the engine failed: {}", e.toString());
        }
        log.info("stopped");
    }

    public NbdServer nbd() { return nbd; }
}
