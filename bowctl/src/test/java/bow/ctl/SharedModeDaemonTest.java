package bow.ctl;

import bow.daemon.Bowd;
import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.RandomAccessFile;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code bowd --mode shared} with the real engine, driven by {@code bowctl snapshot} and read and
 * written over NBD with libnbd: what {@link SnapshotCommandsTest} checks against a stand-in, here
 * end to end. While the engine is still the placeholder (it throws "shared mode is not built
 * yet") the test is skipped with that message; with the engine merged it runs.
 */
class SharedModeDaemonTest {
    static final long SIZE = 4L << 20;

    @TempDir Path dir;
    CompletableFuture<Integer> exit;
    StringWriter bowdErr;
    Path script;

    Path origin() { return dir.resolve("origin.img"); }

    Path cow() { return dir.resolve("cow.img"); }

    Path control() { return dir.resolve("control.sock"); }

    Path nbd() { return dir.resolve("nbd.sock"); }

    OfflineCommandsTest.Run ctl(String... args) {
        String[] a = Arrays.copyOf(args, args.length + 2);
        a[args.length] = "--control";
        a[args.length + 1] = control().toString();
        return OfflineCommandsTest.bowctl(a);
    }

    /** bowd in this JVM on a thread, up once it answers; skips the test while shared mode is the placeholder. */
    void startBowd() throws Exception {
        List<String> args = new ArrayList<>(List.of("--mode", "shared", "--device", origin().toString(), "--cow", cow().toString(),
                "--socket", nbd().toString(), "--control", control().toString()));
        bowdErr = new StringWriter();
        exit = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            CommandLine cl = new CommandLine(new Bowd());
            cl.setErr(new PrintWriter(bowdErr, true));
            exit.complete(cl.execute(args.toArray(String[]::new)));
        }, "bowd-shared");
        t.setDaemon(true);
        t.start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!(Files.exists(nbd()) && ctl("status").code() == 0)) {
            if (exit.isDone()) {
                Assumptions.assumeFalse(bowdErr.toString().contains("shared mode is not built yet"),
                        "the shared-mode engine is still the placeholder: " + bowdErr);
                fail("bowd exited " + exit.get() + ": " + bowdErr);
            }
            if (System.nanoTime() > end) fail("bowd did not come up: " + bowdErr);
            Thread.sleep(20);
        }
    }

    void stopBowd() throws Exception {
        assertEquals(0, ctl("shutdown").code());
        assertEquals(0, exit.get(60, TimeUnit.SECONDS), bowdErr.toString());
    }

    @AfterEach
    void leftovers() throws Exception {
        if (exit != null && !exit.isDone()) {
            ctl("shutdown");
            exit.get(60, TimeUnit.SECONDS);
        }
    }

    /** {@code nbdop.py SOCKET EXPORT fill BYTE | check BYTE | ro}: one libnbd client per call. */
    String nbd(String export, String... op) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(LibnbdScript.PYTHON, script.toString(), nbd().toString(), export));
        cmd.addAll(List.of(op));
        HostTools.Result r = HostTools.run(cmd);
        assertEquals(0, r.code(), export + " " + String.join(" ", op) + ": " + r.output());
        return r.output().trim();
    }

    @Test
    void snapshotsThroughTheRealDaemon() throws Exception {
        HostTools.require(Files.isExecutable(Path.of(LibnbdScript.PYTHON))
                && HostTools.run(List.of(LibnbdScript.PYTHON, "-c", "import nbd")).code() == 0, "python3-libnbd is needed");
        script = dir.resolve("nbdop.py");
        Files.writeString(script, String.join("\n",
                "import nbd, sys",
                "sock, export, op = sys.argv[1], sys.argv[2], sys.argv[3]",
                "h = nbd.NBD(); h.set_export_name(export); h.connect_unix(sock)",
                "size = h.get_size()",
                "if op == 'ro':",
                "    print(h.is_read_only())",
                "elif op == 'fill':",
                "    b = bytes([int(sys.argv[4])]) * (1 << 20)",
                "    for off in range(0, size, len(b)): h.pwrite(b, off)",
                "    h.flush()",
                "elif op == 'check':",
                "    want = bytes([int(sys.argv[4])]) * (1 << 20)",
                "    for off in range(0, size, len(want)):",
                "        got = h.pread(len(want), off)",
                "        if got != want:",
                "            i = next(i for i in range(len(got)) if got[i] != want[i])",
                "            print('differs at', off + i, 'value', got[i]); sys.exit(1)",
                "    print('ok')",
                "h.shutdown()",
                ""));
        try (RandomAccessFile o = new RandomAccessFile(origin().toFile(), "rw"); RandomAccessFile c = new RandomAccessFile(cow().toFile(), "rw")) {
            o.setLength(SIZE);
            c.setLength(SIZE * 4);
        }
        startBowd();
        @SuppressWarnings("unchecked") Map<String, Object> status = (Map<String, Object>) MiniJson.parse(ctl("status", "--json").out().trim());
        assertEquals("shared", status.get("mode"));
        assertEquals("NO_CHECKPOINT", status.get("state"));
        nbd("", "fill", "1");

        OfflineCommandsTest.Run a = ctl("snapshot", "create", "--name", "base");
        assertEquals(0, a.code(), a.err());
        String baseId = a.out().trim();
        assertTrue(baseId.matches("\\d+"), a.out());
        nbd("", "fill", "2");
        OfflineCommandsTest.Run b = ctl("snapshot", "create", "--writable");
        assertEquals(0, b.code(), b.err());
        String rwId = b.out().trim();

        assertEquals("ok", nbd("snapshot-" + baseId, "check", "1"));
        assertEquals("ok", nbd("snapshot-base", "check", "1"));
        assertEquals("True", nbd("snapshot-base", "ro"));
        assertEquals("ok", nbd("snapshot-" + rwId, "check", "2"));
        assertEquals("False", nbd("snapshot-" + rwId, "ro"));
        nbd("snapshot-" + rwId, "fill", "3");
        assertEquals("ok", nbd("snapshot-" + rwId, "check", "3"));
        assertEquals("ok", nbd("", "check", "2"), "a snapshot write leaves the origin alone");

        @SuppressWarnings("unchecked") Map<String, Object> list = (Map<String, Object>) MiniJson.parse(ctl("snapshot", "list", "--json").out().trim());
        assertEquals(2, ((List<?>) list.get("snapshots")).size(), list.toString());
        assertTrue((Long) list.get("free_chunks") < (Long) list.get("total_chunks"), list.toString());

        OfflineCommandsTest.Run rb = ctl("snapshot", "rollback", "base", "--wait");
        assertEquals(0, rb.code(), rb.err());
        assertEquals("ok", nbd("", "check", "1"), "the origin is the snapshot's content again");
        assertEquals("ok", nbd("snapshot-" + rwId, "check", "3"), "other snapshots keep theirs");

        assertEquals(0, ctl("snapshot", "delete", "base").code());
        HostTools.Result gone = HostTools.run(List.of(LibnbdScript.PYTHON, script.toString(), nbd().toString(), "snapshot-base", "ro"));
        assertNotEquals(0, gone.code(), "a deleted snapshot's export is gone");
        assertEquals(ExitCodes.USAGE, ctl("snapshot", "delete", "base").code());

        // Durable across a restart.
        stopBowd();
        startBowd();
        assertEquals("ok", nbd("snapshot-" + rwId, "check", "3"));
        assertEquals("ok", nbd("", "check", "1"));
        OfflineCommandsTest.Run l = ctl("snapshot", "list");
        assertEquals(0, l.code(), l.err());
        assertEquals(3, l.out().split("\n").length, l.out());

        // 64 at most.
        for (int i = 1; i < 64; i++) assertEquals(0, ctl("snapshot", "create").code(), "snapshot " + (i + 1));
        OfflineCommandsTest.Run full = ctl("snapshot", "create");
        assertEquals(ExitCodes.INVALID_STATE, full.code(), full.err());
        assertTrue(full.err().contains("64"), full.err());
        stopBowd();
    }
}
