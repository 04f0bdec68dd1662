package bow.ctl;

import bow.blockdev.FileBlockDevice;
import bow.daemon.Bowd;
import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** bowd in-process on a temp image, driven by the online bowctl commands in-process. */
class OnlineCommandsTest {
    static final long SIZE = 16L << 20;

    @TempDir Path dir;
    Path img, nbd, control;
    final List<Daemon> daemons = new ArrayList<>();

    record Run(int code, String out, String err) {}

    static Run bowctl(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        CommandLine cl = Bowctl.commandLine();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    Run ctl(String... args) {
        String[] a = Arrays.copyOf(args, args.length + 2);
        a[args.length] = "--control";
        a[args.length + 1] = control.toString();
        return bowctl(a);
    }

    /** A bowd running on a thread: its exit code and what it printed on stderr. */
    record Daemon(CompletableFuture<Integer> exit, StringWriter err) {
        int awaitExit() throws Exception { return exit.get(30, TimeUnit.SECONDS); }
    }

    Daemon bowd(String... extra) throws Exception {
        List<String> args = new ArrayList<>(List.of("--device", img.toString(), "--socket", nbd.toString(), "--control", control.toString()));
        args.addAll(List.of(extra));
        StringWriter err = new StringWriter();
        CompletableFuture<Integer> exit = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            try {
                CommandLine cl = new CommandLine(new Bowd());
                cl.setErr(new PrintWriter(err, true));
                exit.complete(cl.execute(args.toArray(String[]::new)));
            } catch (Throwable e) {
                exit.completeExceptionally(e);
            }
        }, "bowd-under-test");
        t.setDaemon(true);
        t.start();
        Daemon d = new Daemon(exit, err);
        daemons.add(d);
        return d;
    }

    /** Starts bowd and waits until it answers on the control socket. */
    Daemon running(String... extra) throws Exception {
        Daemon d = bowd(extra);
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!(Files.exists(nbd) && ctl("status").code() == 0)) {
            if (d.exit().isDone()) fail("bowd exited " + d.exit().get() + ": " + d.err());
            if (System.nanoTime() > end) fail("bowd did not come up: " + d.err());
            Thread.sleep(20);
        }
        return d;
    }

    void shutdown(Daemon d) throws Exception {
        Run r = ctl("shutdown");
        assertEquals(0, r.code(), r.toString());
        assertEquals("shutting down\n", r.out());
        assertEquals(0, d.awaitExit(), d.err().toString());
        assertFalse(Files.exists(control), "control socket removed");
        assertFalse(Files.exists(nbd), "NBD socket removed");
    }

    @AfterEach
    void stopLeftovers() throws Exception {
        for (Daemon d : daemons) {
            if (!d.exit().isDone()) {
                bowctl("shutdown", "--control", control.toString());
                d.exit().get(30, TimeUnit.SECONDS);
            }
        }
    }

    void newImage() throws IOException {
        img = dir.resolve("disk.img");
        nbd = dir.resolve("run/nbd.sock");
        control = dir.resolve("run/control.sock");
        FileBlockDevice.createSparse(img, SIZE);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> statusJson(Run r) {
        assertEquals(0, r.code(), r.toString());
        return (Map<String, Object>) MiniJson.parse(r.out().trim());
    }

    @Test
    void withNoDaemonEveryOnlineCommandIsExitCode5() {
        String sock = dir.resolve("nothing/control.sock").toString();
        for (String[] cmd : new String[][] {{"status"}, {"status", "--json"}, {"checkpoint", "start"}, {"commit"}, {"ranges", "--json"},
                {"trim", "--offset", "0", "--length", "4096"}, {"shutdown"}}) {
            String[] a = Arrays.copyOf(cmd, cmd.length + 2);
            a[cmd.length] = "--control";
            a[cmd.length + 1] = sock;
            Run r = bowctl(a);
            assertEquals(ExitCodes.DAEMON_UNREACHABLE, r.code(), String.join(" ", cmd) + ": " + r);
            assertTrue(r.err().startsWith("bowctl: bowd is not running (no control socket at " + sock), r.err());
            assertEquals("", r.out());
        }
    }

    @Test
    void aWholeCheckpointThroughBowctl() throws Exception {
        newImage();
        Daemon d = running();
        byte[] old = new byte[256 << 10];
        new Random(1).nextBytes(old);
        try (MiniNbd c = MiniNbd.connect(nbd)) {
            c.write(1 << 20, old);          // data that exists before the checkpoint
            c.flush();
        }

        Run human = ctl("status");
        Map<String, String> table = new LinkedHashMap<>();
        for (String line : human.out().split("\n")) {
            String[] kv = line.split("\\s+", 2);
            table.put(kv[0], kv[1]);
        }
        assertEquals("bow", table.get("mode"));
        assertEquals("0 TRIM", table.get("state"));
        assertEquals(img.toString(), table.get("device"));
        assertEquals(Long.toString(SIZE), table.get("size"));
        assertEquals("4096", table.get("block_size"));
        assertEquals("0", table.get("free_bytes"));

        Map<String, Object> st = statusJson(ctl("status", "--json"));
        assertEquals("bow", st.get("mode"));
        assertEquals("0 TRIM", st.get("state"));
        assertEquals(SIZE, st.get("size"));
        assertEquals(0L, st.get("nbd_connections"));
        assertTrue(st.get("details") instanceof Map, st.toString());

        Run early = ctl("commit");
        assertEquals(ExitCodes.INVALID_STATE, early.code(), early.toString());
        assertTrue(early.err().startsWith("bowctl: invalid state: cannot commit in state 0 TRIM"), early.err());
        Run noFree = ctl("checkpoint", "start");
        assertEquals(ExitCodes.FAILURE, noFree.code(), noFree.toString());
        assertTrue(noFree.err().contains("no free space known"), noFree.err());
        Run unaligned = ctl("trim", "--offset", "100", "--length", "4096");
        assertEquals(ExitCodes.USAGE, unaligned.code(), unaligned.toString());
        assertTrue(unaligned.err().startsWith("bowctl: bad request: trim [100, +4096) must be 512-byte aligned"), unaligned.err());

        Run trim = ctl("trim", "--offset", Long.toString(8L << 20), "--length", Long.toString(8L << 20));
        assertEquals(0, trim.code(), trim.toString());
        assertEquals("trimmed 8388608 bytes at 8388608\n", trim.out());
        assertEquals(8L << 20, statusJson(ctl("status", "--json")).get("free_bytes"));

        Run start = ctl("checkpoint", "start");
        assertEquals(0, start.code(), start.toString());
        assertTrue(start.out().startsWith("checkpoint started ("), start.out());
        Run again = ctl("checkpoint", "start");
        assertEquals(ExitCodes.INVALID_STATE, again.code(), again.toString());
        assertTrue(again.err().contains("cannot start a checkpoint in state 1 CHECKPOINT"), again.err());

        byte[] fresh = new byte[128 << 10];
        new Random(2).nextBytes(fresh);
        try (MiniNbd c = MiniNbd.connect(nbd)) {
            assertEquals(1L, statusJson(ctl("status", "--json")).get("nbd_connections"));
            c.write(1 << 20, fresh);        // overwrites data that held something: backed up first
            c.flush();
        }
        st = statusJson(ctl("status", "--json"));
        assertEquals("1 CHECKPOINT", st.get("state"));
        assertEquals((long) fresh.length + 4096, st.get("backed_up_bytes"), "the new data's old bytes, and block 0's copy");

        Run ranges = ctl("ranges", "--json");
        assertEquals(0, ranges.code(), ranges.toString());
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> rs = (List<Map<String, Object>>) MiniJson.parse(ranges.out().trim());
        long next = 0;
        Map<String, Long> bytesByType = new LinkedHashMap<>();
        for (Map<String, Object> r : rs) {
            assertEquals(next, r.get("offset"), "ranges are contiguous: " + ranges.out());
            next += (Long) r.get("length");
            bytesByType.merge((String) r.get("type"), (Long) r.get("length"), Long::sum);
        }
        assertEquals(SIZE, next, "ranges cover the device");
        assertEquals(4096L, bytesByType.get("Sector0"));
        assertEquals(4096L, bytesByType.get("Sector0_current"));
        assertEquals((long) fresh.length, bytesByType.get("Changed"));
        assertTrue(bytesByType.get("Backup") >= fresh.length, bytesByType.toString());
        assertTrue(rs.stream().anyMatch(r -> r.get("offset").equals(1L << 20) && r.get("type").equals("Changed")
                && r.get("length").equals((long) fresh.length)), ranges.out());
        Run plain = ctl("ranges");
        assertTrue(plain.out().startsWith("offset"), plain.out());
        assertEquals(rs.size() + 1, plain.out().split("\n").length);

        Run commit = ctl("commit");
        assertEquals(0, commit.code(), commit.toString());
        assertEquals("checkpoint committed\n", commit.out());
        assertTrue(((String) statusJson(ctl("status", "--json")).get("state")).startsWith("2 "));
        assertEquals(ExitCodes.INVALID_STATE, ctl("commit").code());
        shutdown(d);

        // The committed image keeps the new bytes, and carries no log.
        byte[] now = Files.readAllBytes(img);
        assertArrayEquals(fresh, Arrays.copyOfRange(now, 1 << 20, (1 << 20) + fresh.length));
        assertArrayEquals(Arrays.copyOfRange(old, fresh.length, old.length),
                Arrays.copyOfRange(now, (1 << 20) + fresh.length, (1 << 20) + old.length));
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("log", "verify", "--device", img.toString()).code());
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, ctl("status").code(), "the daemon is gone");
    }

    @Test
    void aDeviceWithALogIsRefusedUnlessForcedOrResumed() throws Exception {
        newImage();
        byte[] old = new byte[64 << 10];
        new Random(3).nextBytes(old);
        Daemon d = running();
        try (MiniNbd c = MiniNbd.connect(nbd)) {
            c.write(4096, old);
            c.flush();
        }
        assertEquals(0, ctl("trim", "--offset", Long.toString(4L << 20), "--length", Long.toString(4L << 20)).code());
        assertEquals(0, ctl("checkpoint", "start").code());
        try (MiniNbd c = MiniNbd.connect(nbd)) {
            c.write(4096, new byte[old.length]);
            c.flush();
        }
        shutdown(d);    // the checkpoint stays on the device

        Daemon refused = bowd();
        assertEquals(3, refused.awaitExit(), refused.err().toString());
        String msg = refused.err().toString();
        assertTrue(msg.contains("still carries a checkpoint log"), msg);
        assertTrue(msg.contains("'bowctl rollback --device " + img + "'"), msg);
        assertTrue(msg.contains("'bowctl commit --device " + img + "'"), msg);
        assertTrue(msg.contains("--resume"), msg);
        assertFalse(Files.exists(control), "no control socket from a daemon that refused");

        Daemon resumed = running("--resume");
        Map<String, Object> st = statusJson(ctl("status", "--json"));
        assertEquals("1 CHECKPOINT", st.get("state"));
        assertTrue((Long) st.get("log_entries") >= 1, st.toString());
        assertTrue(ctl("ranges", "--json").out().contains("\"type\":\"Changed\""));
        shutdown(resumed);

        Daemon forced = running("--force");
        assertEquals("0 TRIM", statusJson(ctl("status", "--json")).get("state"));
        shutdown(forced);

        Run rb = bowctl("rollback", "--device", img.toString());
        assertEquals(0, rb.code(), rb.toString());
        assertArrayEquals(old, Arrays.copyOfRange(Files.readAllBytes(img), 4096, 4096 + old.length), "rolled back to the checkpoint");
        Daemon fresh = running();
        assertEquals("0 TRIM", statusJson(ctl("status", "--json")).get("state"));
        shutdown(fresh);
    }

    @Test
    void shutdownOfAnIdleDaemonIsAnsweredAndExitsZero() throws Exception {
        newImage();
        // The answer used to race the daemon's stop (its close interrupted the handler): repeat.
        for (int i = 0; i < 5; i++) shutdown(running());
    }

    @Test
    void clientTimeoutAndRequestMemoryFlags() throws Exception {
        newImage();
        Daemon zero = bowd("--client-timeout", "0");
        assertEquals(2, zero.awaitExit());
        assertTrue(zero.err().toString().contains("--client-timeout must be at least 1 second"), zero.err().toString());
        Daemon small = bowd("--max-request-memory", "1048576");
        assertEquals(2, small.awaitExit());
        assertTrue(small.err().toString().contains("--max-request-memory must be at least 33554432"), small.err().toString());

        Daemon d = running("--client-timeout", "1", "--max-request-memory", "67108864");
        assertTimeoutPreemptively(java.time.Duration.ofSeconds(15), () -> {
            // A control client that sends a length and no body is answered and cut after 1 s...
            try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                c.connect(UnixDomainSocketAddress.of(control));
                c.write(java.nio.ByteBuffer.wrap(new byte[] {100}));
                bow.proto.Response r = bow.control.Framing.read(Channels.newInputStream(c), bow.proto.Response.parser());
                assertTrue(r.getMessage().contains("no whole request within 1000 ms"), r.getMessage());
            }
            // ...and so is an NBD client that never finishes its handshake.
            try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                c.connect(UnixDomainSocketAddress.of(nbd));
                java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(64);
                while (c.read(b) >= 0) b.clear();   // greeting, then the end of the stream
            }
        });
        assertEquals(0, ctl("status").code());
        shutdown(d);
    }

    @Test
    void aSecondDaemonDoesNotStealTheSockets() throws Exception {
        newImage();
        Daemon first = running();
        // Another device on the same sockets (the same device would be refused by its lock first).
        Path firstImage = img;
        img = dir.resolve("other.img");
        FileBlockDevice.createSparse(img, SIZE);
        Daemon second = bowd();
        img = firstImage;
        assertEquals(1, second.awaitExit(), second.err().toString());
        assertTrue(second.err().toString().contains("another bowd is already running on " + control), second.err().toString());
        assertEquals("0 TRIM", statusJson(ctl("status", "--json")).get("state"), "the first daemon still answers");
        try (MiniNbd c = MiniNbd.connect(nbd)) {
            c.write(0, new byte[4096]);
        }
        shutdown(first);

        // A socket left behind by a daemon that died is stale: the next one replaces it.
        Files.createDirectories(control.getParent());
        try (java.nio.channels.ServerSocketChannel dead = java.nio.channels.ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            dead.bind(UnixDomainSocketAddress.of(control));
        }
        assertTrue(Files.exists(control));
        shutdown(running());

        // Something that is not a socket is never deleted.
        Files.writeString(control, "precious");
        Daemon refused = bowd();
        assertEquals(1, refused.awaitExit());
        assertTrue(refused.err().toString().contains("exists and is not a socket"), refused.err().toString());
        assertEquals("precious", Files.readString(control));
    }

    /**
     * uid 65534 runs the real bowctl in its own JVM. With the socket as bowd makes it
     * (0600) the kernel refuses the connection; with the socket opened up, bowd's own
     * SO_PEERCRED check refuses it; with --allow-uid 65534 it is served.
     */
    @Test
    void anotherUserIsRefusedUnlessAllowed() throws Exception {
        HostTools.require(HostTools.isRoot(), "root is needed to run bowctl as another user");
        HostTools.requireTools("setpriv");
        newImage();
        Path cp = publicClasspath();
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));

        Daemon d = running();
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(control)));
        HostTools.Result blocked = bowctlAsNobody(cp);
        assertEquals(ExitCodes.PERMISSION_DENIED, blocked.code(), blocked.output());
        assertTrue(blocked.output().contains("permission denied"), blocked.output());

        Files.setPosixFilePermissions(control, PosixFilePermissions.fromString("rw-rw-rw-"));
        HostTools.Result refused = bowctlAsNobody(cp);
        assertEquals(ExitCodes.PERMISSION_DENIED, refused.code(), refused.output());
        assertTrue(refused.output().contains("bowctl: permission denied: uid 65534 is not allowed to control bowd"), refused.output());
        shutdown(d);

        Daemon allowing = running("--allow-uid", "65534");
        Files.setPosixFilePermissions(control, PosixFilePermissions.fromString("rw-rw-rw-"));
        HostTools.Result served = bowctlAsNobody(cp);
        assertEquals(0, served.code(), served.output());
        assertTrue(served.output().contains("0 TRIM"), served.output());
        shutdown(allowing);
    }

    private HostTools.Result bowctlAsNobody(Path cp) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        return HostTools.run(List.of("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                java, "-XX:-UsePerfData", "-Xshare:auto", "-cp", cp.toString() + "/*:" + cp.resolve("classes"),
                "bow.ctl.Bowctl", "status", "--control", control.toString()), 60);
    }

    /** The test classpath copied where uid 65534 can read it (the build's own files may be private). */
    private Path publicClasspath() throws IOException {
        Path cp = Files.createDirectories(dir.resolve("cp"));
        Path classes = Files.createDirectories(cp.resolve("classes"));
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            Path p = Path.of(e);
            if (Files.isDirectory(p)) {
                try (Stream<Path> s = Files.walk(p)) {
                    for (Path f : s.toList()) {
                        Path to = classes.resolve(p.relativize(f).toString());
                        if (Files.isDirectory(f)) Files.createDirectories(to);
                        else if (!Files.exists(to)) Files.copy(f, to);
                    }
                }
            } else if (e.endsWith(".jar") && Files.exists(p)) {
                Files.copy(p, cp.resolve(p.getFileName()), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        try (Stream<Path> s = Files.walk(cp)) {
            for (Path f : s.toList()) {
                Files.setPosixFilePermissions(f, PosixFilePermissions.fromString(Files.isDirectory(f) ? "rwxr-xr-x" : "rw-r--r--"));
            }
        }
        return cp;
    }

    /** Just enough of an NBD client (fixed newstyle, NBD_OPT_EXPORT_NAME) to write and flush. */
    static final class MiniNbd implements AutoCloseable {
        private final SocketChannel ch;
        private final DataInputStream in;
        private final DataOutputStream out;
        private long handle;

        private MiniNbd(SocketChannel ch) {
            this.ch = ch;
            this.in = new DataInputStream(Channels.newInputStream(ch));
            this.out = new DataOutputStream(Channels.newOutputStream(ch));
        }

        static MiniNbd connect(Path sock) throws IOException {
            SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            ch.connect(UnixDomainSocketAddress.of(sock));
            MiniNbd c = new MiniNbd(ch);
            assertEquals(0x4e42444d41474943L, c.in.readLong(), "NBDMAGIC");
            assertEquals(0x49484156454F5054L, c.in.readLong(), "IHAVEOPT");
            c.in.readShort();
            c.out.writeInt(1 | 2);                  // FIXED_NEWSTYLE | NO_ZEROES
            c.out.writeLong(0x49484156454F5054L);
            c.out.writeInt(1);                      // NBD_OPT_EXPORT_NAME, default export
            c.out.writeInt(0);
            c.out.flush();
            assertEquals(SIZE, c.in.readLong(), "export size");
            c.in.readShort();
            return c;
        }

        private void request(int type, long offset, byte[] data) throws IOException {
            long h = ++handle;
            out.writeInt(0x25609513);
            out.writeShort(0);
            out.writeShort(type);
            out.writeLong(h);
            out.writeLong(offset);
            out.writeInt(data == null ? 0 : data.length);
            if (data != null) out.write(data);
            out.flush();
            assertEquals(0x67446698, in.readInt(), "simple reply magic");
            int error = in.readInt();
            assertEquals(h, in.readLong());
            assertEquals(0, error, "NBD error for type " + type);
        }

        void write(long offset, byte[] data) throws IOException { request(1, offset, data); }

        void flush() throws IOException { request(3, 0, null); }

        @Override
        public void close() throws IOException {
            out.writeInt(0x25609513);
            out.writeShort(0);
            out.writeShort(2);                      // NBD_CMD_DISC
            out.writeLong(0);
            out.writeLong(0);
            out.writeInt(0);
            out.flush();
            ch.close();
        }
    }
}
