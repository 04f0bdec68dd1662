package bow.ctl;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** bowd as a real process, driven by bowctl's online commands through the control socket. */
class DaemonCliTest {
    private static final long SIZE = 64L << 20;
    @TempDir Path dir;

    private Path image() throws Exception {
        Path img = dir.resolve("dev.img");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(SIZE);
        }
        return img;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> status(Path control) {
        OfflineCommandsTest.Run r = bowctl("status", "--json", "--control", control.toString());
        assertEquals(0, r.code(), r.err());
        return (Map<String, Object>) MiniJson.parse(r.out().trim());
    }

    @Test
    @SuppressWarnings("unchecked")
    void lifecycleThroughBowctlThenRefusesTheLoggedDeviceUnlessForced() throws Exception {
        Path img = image();
        String ctl;
        try (BowdProcess d = BowdProcess.start(dir, "--device", img.toString())) {
            ctl = d.control.toString();
            assertEquals("rw-------", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(d.control)));
            Map<String, Object> s = status(d.control);
            assertEquals("bow", s.get("mode"));
            assertEquals("0 TRIM", s.get("state"));
            assertEquals(img.toString(), s.get("device"));
            assertEquals(SIZE, s.get("size"));
            assertEquals(4096L, s.get("block_size"));
            assertEquals(0L, s.get("free_bytes"));
            assertEquals(0L, s.get("nbd_connections"));
            OfflineCommandsTest.Run table = bowctl("status", "--control", ctl);
            assertEquals(0, table.code());
            assertTrue(table.out().matches("(?s).*state\\s+0 TRIM.*"), table.out());

            // Nothing trimmed yet: the daemon knows no free space, a plain failure.
            OfflineCommandsTest.Run early = bowctl("checkpoint", "start", "--control", ctl);
            assertEquals(ExitCodes.FAILURE, early.code(), early.err());
            assertTrue(early.err().contains("no free space"), early.err());

            assertEquals(ExitCodes.USAGE, bowctl("trim", "--offset", "1", "--length", "4096", "--control", ctl).code(),
                    "unaligned trim is a bad request");
            assertEquals(0, bowctl("trim", "--offset", String.valueOf(1 << 20), "--length", String.valueOf(8 << 20), "--control", ctl).code());
            assertEquals(8L << 20, status(d.control).get("free_bytes"));

            OfflineCommandsTest.Run start = bowctl("checkpoint", "start", "--control", ctl);
            assertEquals(0, start.code(), start.err());
            assertEquals("1 CHECKPOINT", status(d.control).get("state"));

            OfflineCommandsTest.Run again = bowctl("checkpoint", "start", "--control", ctl);
            assertEquals(ExitCodes.INVALID_STATE, again.code());
            assertTrue(again.err().contains("invalid state"), again.err());
            assertEquals(1, again.err().lines().filter(l -> l.contains("bowctl:")).count(), "no retry of an invalid state");

            OfflineCommandsTest.Run ranges = bowctl("ranges", "--json", "--control", ctl);
            assertEquals(0, ranges.code());
            List<Map<String, Object>> rs = (List<Map<String, Object>>) MiniJson.parse(ranges.out().trim());
            long covered = 0, free = 0;
            for (Map<String, Object> r : rs) {
                assertEquals(covered, r.get("offset"), "ranges are contiguous: " + ranges.out());
                covered += (Long) r.get("length");
                if ("Free".equals(r.get("type"))) free += (Long) r.get("length");
            }
            assertEquals(SIZE, covered);
            assertTrue(free > 0 && free < 8L << 20, "one free block went to block 0's copy: " + ranges.out());
            assertEquals("Sector0", rs.get(0).get("type"));

            OfflineCommandsTest.Run stop = bowctl("shutdown", "--control", ctl);
            assertEquals(0, stop.code(), stop.err());
            assertEquals(0, d.waitFor(), d.output());
            assertTrue(Files.notExists(d.control), "control socket removed");
        }
        OfflineCommandsTest.Run gone = bowctl("status", "--control", ctl);
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, gone.code());
        assertTrue(gone.err().contains("not running"), gone.err());

        // The image now carries the checkpoint log: bowd says what to run and exits 3.
        Path log = dir.resolve("refused.log");
        Process refused = BowdProcess.launch(dir, log, List.of("--device", img.toString(),
                "--control", dir.resolve("c2.sock").toString(), "--socket", dir.resolve("n2.sock").toString()));
        assertTrue(refused.waitFor(60, java.util.concurrent.TimeUnit.SECONDS));
        String msg = Files.readString(log);
        assertEquals(3, refused.exitValue(), msg);
        assertTrue(msg.contains("bowctl rollback --device " + img), msg);
        assertTrue(msg.contains("bowctl commit --device " + img), msg);

        // --force serves it anyway; SIGTERM stops it cleanly with exit 0.
        try (BowdProcess d = BowdProcess.start(dir, "--device", img.toString(), "--force")) {
            assertEquals("0 TRIM", status(d.control).get("state"));
            d.process.destroy();   // SIGTERM
            assertEquals(0, d.waitFor(), d.output());
            assertTrue(Files.notExists(d.nbd), "NBD socket removed");
        }
        // Offline commit makes it a plain device again, which bowd accepts.
        assertEquals(0, bowctl("commit", "--device", img.toString()).code());
        try (BowdProcess d = BowdProcess.start(dir, "--device", img.toString())) {
            assertEquals("0 TRIM", status(d.control).get("state"));
        }
    }

    @Test
    void withoutDeviceServesADefaultSparseImageUnderBowHome() throws Exception {
        try (BowdProcess d = BowdProcess.start(dir)) {
            Path img = dir.resolve("home").resolve("default.img");
            assertEquals(img.toString(), status(d.control).get("device"));
            assertEquals(1L << 30, Files.size(img));
            assertTrue(d.output().contains("created the default image"), d.output());
            assertEquals(0, bowctl("shutdown", "--control", d.control.toString()).code());
            assertEquals(0, d.waitFor());
        }
    }

    @Test
    void bowctlReportsAMissingDaemon() {
        OfflineCommandsTest.Run r = bowctl("ranges", "--control", dir.resolve("none.sock").toString());
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, r.code());
        assertTrue(r.err().contains("not running"), r.err());
    }

    @Test
    void exportNameIsOfferedBesideTheDefaultExport() throws Exception {
        bow.testing.HostTools.requireTools("nbdinfo");
        try (BowdProcess d = BowdProcess.start(dir, "--device", image().toString(), "--export-name", "disk")) {
            bow.testing.HostTools.Result list = bow.testing.HostTools.run(
                    List.of("nbdinfo", "--list", "--json", "nbd+unix:///?socket=" + d.nbd));
            String out = list.checkOk();
            assertTrue(out.contains("\"export-name\": \"disk\""), out);
            assertTrue(out.contains("\"export-name\": \"\""), out);
            String size = bow.testing.HostTools.run(List.of("nbdinfo", "--size", "nbd+unix:///disk?socket=" + d.nbd)).checkOk();
            assertEquals(String.valueOf(SIZE), size.trim());
        }
    }

    @Test
    void tcpOffLoopbackIsRefusedWithoutTcpAny() throws Exception {
        Path log = dir.resolve("tcp.log");
        Process p = BowdProcess.launch(dir, log, List.of("--device", image().toString(), "--tcp", "0.0.0.0:0",
                "--control", dir.resolve("c.sock").toString(), "--socket", dir.resolve("n.sock").toString()));
        assertTrue(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS));
        String msg = Files.readString(log);
        assertEquals(1, p.exitValue(), msg);
        assertTrue(msg.contains("loopback"), msg);
        assertTrue(Files.notExists(dir.resolve("c.sock")), "control socket cleaned up");
    }

    @Test
    void aRefusedUidGetsPermissionDeniedEveryTime() throws Exception {
        bow.engine.ModeEngine engine = bow.bowmode.BowEngine.open(new bow.blockdev.MemoryBlockDevice(1 << 20), "mem", 4096);
        try (bow.control.ControlServer server = new bow.control.ControlServer(engine, () -> 0, uid -> false, () -> { })) {
            Path sock = dir.resolve("refusing.sock");
            server.listen(sock);
            // The server answers a refused peer after its request: the answer is never lost to a broken pipe.
            for (int i = 0; i < 10; i++) {
                OfflineCommandsTest.Run r = bowctl("status", "--control", sock.toString());
                assertEquals(ExitCodes.PERMISSION_DENIED, r.code(), r.err());
                assertTrue(r.err().contains("permission denied") && r.err().contains("not allowed"), r.err());
            }
        }
    }

    private static List<String> bowdCommand(String... args) {
        List<String> cmd = new java.util.ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "bow.daemon.Bowd"));
        cmd.addAll(List.of(args));
        return cmd;
    }

    @Test
    void socketActivationServesTheListenerItIsHanded() throws Exception {
        bow.testing.HostTools.requireTools("nbdinfo");
        List<String> cmd = new java.util.ArrayList<>(List.of("nbdinfo", "--size", "--", "["));
        cmd.addAll(bowdCommand("--device", image().toString(), "--control", dir.resolve("c.sock").toString()));
        cmd.add("]");
        assertEquals(String.valueOf(SIZE), bow.testing.HostTools.run(cmd).checkOk().lines()
                .filter(l -> l.matches("\\d+")).findFirst().orElse(""));
    }

    @Test
    void stdinServesOneConnectionThenExits() throws Exception {
        bow.testing.HostTools.require(bow.testing.HostTools.run(List.of("/usr/bin/python3", "-c", "import nbd")).code() == 0,
                "python3-libnbd is not installed");
        Path img = image();
        String py = "import nbd,sys,json\n"
                + "h=nbd.NBD(); h.connect_command(json.loads(sys.argv[1]))\n"
                + "print(h.get_size()); h.pwrite(b'x'*4096, 8192); h.flush(); h.shutdown()\n";
        StringBuilder json = new StringBuilder("[");
        for (String a : bowdCommand("--stdin", "--device", img.toString(), "--control", dir.resolve("c.sock").toString())) {
            if (json.length() > 1) json.append(',');
            json.append(Json.quote(a));
        }
        String out = bow.testing.HostTools.run(List.of("/usr/bin/python3", "-c", py, json.append(']').toString())).checkOk();
        assertTrue(out.contains(String.valueOf(SIZE)), out);
        byte[] b = new byte[4096];
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            f.seek(8192);
            f.readFully(b);
        }
        for (byte x : b) assertEquals('x', x);
    }

    @Test
    void stdinThatIsNotASocketIsAClearError() throws Exception {
        Path log = dir.resolve("stdin.log");
        Process p = BowdProcess.launch(dir, log, List.of("--stdin", "--device", image().toString(),
                "--control", dir.resolve("c.sock").toString()));
        assertTrue(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS));
        String msg = Files.readString(log);
        assertEquals(1, p.exitValue(), msg);
        assertTrue(msg.contains("standard input is not a connected socket"), msg);
    }

    /** Runs a tiny control client as another user; returns what the daemon answered. */
    private static String asUser(int uid, Path sock, boolean send) throws Exception {
        // A status request is the bytes {len=2, field 1 (status), length 0}.
        String py = "import socket,sys\n"
                + "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                + (send ? "s.sendall(bytes([2,10,0]))\n" : "")
                + "sys.stdout.buffer.write(s.recv(4096))\n";
        return bow.testing.HostTools.run(List.of("setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
                "/usr/bin/python3", "-c", py, sock.toString())).checkOk();
    }

    @Test
    void anAllowListedUserIsServedAndOthersAreRefused() throws Exception {
        bow.testing.HostTools.require(bow.testing.HostTools.isRoot(), "root is needed to run clients as other users");
        bow.testing.HostTools.requireTools("setpriv");
        bow.testing.HostTools.require(Files.isExecutable(Path.of("/usr/bin/python3")), "/usr/bin/python3 is needed");
        Files.setPosixFilePermissions(dir, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
        try (BowdProcess d = BowdProcess.start(dir, "--device", image().toString(), "--allow-uid", "65534")) {
            assertEquals("rw-rw-rw-", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(d.control)));
            String allowed = asUser(65534, d.control, true);
            assertTrue(allowed.contains("bow") && allowed.contains("0 TRIM") && !allowed.contains("not allowed"), allowed);
            String refused = asUser(65533, d.control, true);
            assertTrue(refused.contains("uid 65533 is not allowed"), refused);
            // One that connects and sends nothing is answered and cut off, not left holding a slot.
            String silent = asUser(65533, d.control, false);
            assertTrue(silent.contains("uid 65533 is not allowed"), silent);
            assertEquals(0, bowctl("status", "--control", d.control.toString()).code(), "root is still served");
        }
    }

    @Test
    void persistentModeServesOriginAndAReadOnlySnapshot() throws Exception {
        Path cow = dir.resolve("cow.img");
        try (RandomAccessFile f = new RandomAccessFile(cow.toFile(), "rw")) {
            f.setLength(16L << 20);
        }
        try (BowdProcess d = BowdProcess.start(dir, "--mode", "persistent", "--device", image().toString(), "--cow", cow.toString())) {
            String ctl = d.control.toString();
            assertEquals("persistent", status(d.control).get("mode"));
            OfflineCommandsTest.Run start = bowctl("checkpoint", "start", "--control", ctl);
            assertEquals(0, start.code(), start.err());
            assertEquals("CHECKPOINT", status(d.control).get("state"));
            bow.testing.HostTools.requireTools("nbdinfo");
            String list = bow.testing.HostTools.run(List.of("nbdinfo", "--list", "--json", "nbd+unix:///?socket=" + d.nbd)).checkOk();
            assertTrue(list.matches("(?s).*\"export-name\": \"snapshot\".*\"is_read_only\": true.*"), list);
            assertEquals(0, bowctl("shutdown", "--control", ctl).code());
            assertEquals(0, d.waitFor(), d.output());
        }
        // Without a COW the mode cannot start: a clear message, exit 1.
        Path log = dir.resolve("nocow.log");
        Process p = BowdProcess.launch(dir, log, List.of("--mode", "persistent", "--device", image().toString(),
                "--control", dir.resolve("c3.sock").toString(), "--socket", dir.resolve("n3.sock").toString()));
        assertTrue(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS));
        assertEquals(1, p.exitValue());
        assertTrue(Files.readString(log).contains("--mode persistent needs --cow PATH"), Files.readString(log));
    }
}
