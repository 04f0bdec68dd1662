package bow.ctl;

import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;
import bow.control.Framing;
import bow.proto.RangesReply;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.SnapshotCreateReply;
import bow.proto.SnapshotInfo;
import bow.proto.SnapshotListReply;
import bow.proto.StatusReply;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Entry point of {@code bin/bowctl}: answers the common commands on the fast path
 * ({@link FastPath}) before any picocli class is loaded, else runs {@link Bowctl}.
 * Kept free of picocli references, so that loading it loads nothing more.
 */
public final class Main {
    private Main() {}

    /** Set by the launcher on the call that writes the class-data archive (see {@link #train}). */
    static final String TRAIN_PROPERTY = "bowctl.cds.train";

    public static void main(String[] args) {
        Integer fast = FastPath.tryRun(args);
        int code = fast != null ? fast : Bowctl.run(args);
        if (Boolean.getBoolean(TRAIN_PROPERTY)) train();
        System.exit(code);
    }

    /**
     * On the call that writes the launcher's class-data archive, whatever command it was: decode
     * an answer of every kind the daemon sends, so that the archive holds the protobuf classes
     * (and the descriptors' code) that reading them loads, and not only those of the first command;
     * run the common daemon commands against a stand-in daemon ({@link #trainDaemonCommands}); and
     * verify a small checkpoint log offline ({@link #trainOffline}).
     */
    static void train() {
        trainDaemonAnswers();
        try {
            int ok = trainDaemonCommands();
            if (ok != DAEMON_TRAINING.length) System.err.println("bowctl: class-data archive training: " + ok + " of "
                    + DAEMON_TRAINING.length + " daemon commands succeeded");
            int code = trainOffline();
            if (code != ExitCodes.OK) System.err.println("bowctl: class-data archive training: log verify exited " + code);
        } catch (IOException | RuntimeException e) {
            System.err.println("bowctl: class-data archive training: " + e);   // only the archive is poorer
        }
    }

    /**
     * The daemon commands the training runs: those without side effects beyond the daemon (none
     * of them reads or writes a checkpoint record). "%s" is the stand-in's control socket.
     */
    static final String[][] DAEMON_TRAINING = {
        {"status", "--control", "%s"}, {"status", "--json", "--control", "%s"}, {"snapshot", "list", "--control", "%s"},
        {"snapshot", "create", "a", "--control", "%s"}, {"trim", "--offset", "0", "--length", "4096", "--control", "%s"},
        {"shutdown", "--control", "%s"},
    };

    /**
     * Runs {@link #DAEMON_TRAINING} through the fast path against a stand-in daemon on a socket in
     * a temporary directory (removed again), which answers each request with a canned reply of its
     * kind: the archive then holds each command's classes and the client's request path. When the
     * first call after a build was {@code needs-checkpoint}, a {@code status} loaded 66 classes
     * from the jars and took about 20 ms longer (bench/RESULTS.md).
     *
     * @return how many of the commands exited with {@link ExitCodes#OK}
     */
    static int trainDaemonCommands() throws IOException {
        Path dir = Files.createTempDirectory("bowctl-cds-");
        Path socket = dir.resolve("control.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            Thread daemon = new Thread(() -> standIn(server), "bowctl-cds-daemon");
            daemon.setDaemon(true);
            daemon.start();
            PrintWriter sink = new PrintWriter(new StringWriter());
            int ok = 0;
            for (String[] args : DAEMON_TRAINING) {
                String[] a = args.clone();
                for (int i = 0; i < a.length; i++) a[i] = a[i].replace("%s", socket.toString());
                Integer code = FastPath.tryRun(a, sink, sink);
                if (code != null && code == ExitCodes.OK) ok++;
            }
            return ok;
        } finally {
            Files.deleteIfExists(socket);
            Files.deleteIfExists(dir);
        }
    }

    /** The stand-in daemon: one request per connection, answered by kind, until the socket is closed. */
    private static void standIn(ServerSocketChannel server) {
        Response[] answers = cannedAnswers();
        Response ok = Response.newBuilder().setCode(Response.Code.OK).setMessage("ok").build();
        while (true) {
            try (SocketChannel ch = server.accept()) {
                Request q = Framing.read(Channels.newInputStream(ch), Request.parser());
                if (q == null) continue;
                Response a = switch (q.getKindCase()) {
                    case STATUS -> answers[0];
                    case SNAPSHOT_LIST -> answers[1];
                    case SNAPSHOT_CREATE -> answers[2];
                    default -> ok;
                };
                Framing.write(Channels.newOutputStream(ch), a);
            } catch (IOException e) {
                if (!server.isOpen()) return;   // the training is over
            }
        }
    }

    /** One answer of each kind the daemon sends: status, snapshot list, snapshot created, ranges, a refusal. */
    private static Response[] cannedAnswers() {
        return new Response[] {
            Response.newBuilder().setCode(Response.Code.OK).setMessage("ok").setStatus(StatusReply.newBuilder()
                    .setMode("bow").setState("1 CHECKPOINT").putDetails("io_flushes", "0")).build(),
            Response.newBuilder().setCode(Response.Code.OK).setSnapshotList(SnapshotListReply.newBuilder()
                    .addSnapshots(SnapshotInfo.newBuilder().setId(0).setName("a"))).build(),
            Response.newBuilder().setCode(Response.Code.OK).setSnapshotCreated(SnapshotCreateReply.newBuilder().setId(0)).build(),
            Response.newBuilder().setCode(Response.Code.OK).setRanges(RangesReply.getDefaultInstance()).build(),
            Response.newBuilder().setCode(Response.Code.INVALID_STATE).setMessage("no").build(),
        };
    }

    private static void trainDaemonAnswers() {
        try {
            for (Response r : cannedAnswers()) {
                ByteArrayOutputStream b = new ByteArrayOutputStream();
                Framing.write(b, r);
                Response back = Framing.read(new ByteArrayInputStream(b.toByteArray()), Response.parser());
                if (back == null || back.getStatus().getDetailsCount() != r.getStatus().getDetailsCount()) throw new IOException("round trip");
            }
        } catch (IOException e) {
            System.err.println("bowctl: class-data archive training: " + e);   // only the archive is poorer
        }
    }

    /**
     * Runs {@code log verify} on a small checkpoint image in a temporary file, which is deleted
     * again: the archive then holds the offline path's classes (the log walk, the mapped
     * checksums, their thread pool) however it was written. When the first call after a build was
     * a daemon command, a 4 GiB verify took 30-40 ms longer without them (bench/RESULTS.md).
     *
     * @return the command's exit code ({@link ExitCodes#OK}: the image verified)
     */
    static int trainOffline() throws IOException {
        Path img = Files.createTempFile("bowctl-cds-", ".img");
        try {
            Files.write(img, trainingImage());
            PrintWriter sink = new PrintWriter(new StringWriter());
            LogCommand.Verify v = new LogCommand.Verify();
            v.device = img;
            return v.run(sink, sink);
        } finally {
            Files.deleteIfExists(img);
        }
    }

    /**
     * A checkpoint as the bow engine leaves one, block size 4096, 40 blocks: block 0 holds log
     * sequence 0 with two entries (the original block 0, backed up to block 2; blocks 8..23,
     * backed up to 24..39), the live block 0 at block 1.
     */
    static byte[] trainingImage() {
        int bs = 4096, spb = bs / 512;
        byte[] image = new byte[40 * bs];
        for (int i = 0; i < image.length; i++) image[i] = (byte) (i * 31 + (i >>> 12));
        System.arraycopy(image, 0, image, bs, bs);            // live block 0
        System.arraycopy(image, 0, image, 2 * bs, bs);        // backup of block 0
        System.arraycopy(image, 8 * bs, image, 24 * bs, 16 * bs);
        LogBlock log = new LogBlock(java.util.Arrays.copyOf(image, bs));
        log.initHeader(LogBlock.MAGIC, bs, 2, 0, spb);
        log.setEntry(0, new LogEntry(0, 2L * spb, bs, BowCrc.update(0, image, 2 * bs, bs)));
        log.setEntry(1, new LogEntry(8L * spb, 24L * spb, 16 * bs, BowCrc.update(8, image, 24 * bs, 16 * bs)));
        System.arraycopy(log.bytes(), 0, image, 0, bs);
        return image;
    }
}
