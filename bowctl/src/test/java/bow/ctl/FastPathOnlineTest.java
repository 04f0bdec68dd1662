package bow.ctl;

import bow.daemon.Daemon;
import bow.daemon.DaemonConfig;
import bow.daemon.PathDetailsEngine;
import bow.engine.FakeSnapshotEngine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The online commands on bowctl's fast path answer a real daemon (fake shared-mode engine) exactly
 * as picocli's commands do, and a bowctl process on that path loads no picocli class at all.
 */
class FastPathOnlineTest {
    @TempDir Path dir;
    Daemon daemon;
    FakeSnapshotEngine fake;

    Path control() { return dir.resolve("control.sock"); }

    void start() throws Exception {
        fake = new FakeSnapshotEngine(8 * FakeSnapshotEngine.CHUNK_BYTES, 100);
        daemon = Daemon.create(new PathDetailsEngine(fake, dir.resolve("origin.img"), dir.resolve("cow.img")),
                new DaemonConfig(fake.mode(), dir.resolve("origin.img"), dir.resolve("cow.img"), 4096, 0,
                        false, false, dir.resolve("nbd.sock"), null, false, false, control(), Set.of(), "disk"));
        daemon.start(null);
    }

    @AfterEach
    void stop() {
        if (daemon != null) daemon.stop();
    }

    private String[] withControl(String... args) {
        String[] a = Arrays.copyOf(args, args.length + 2);
        a[args.length] = "--control";
        a[args.length + 1] = control().toString();
        return a;
    }

    private OfflineCommandsTest.Run fast(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        Integer code = FastPath.tryRun(args, new PrintWriter(out, true), new PrintWriter(err, true));
        assertNotNull(code, "fast path taken for " + String.join(" ", args));
        return new OfflineCommandsTest.Run(code, out.toString(), err.toString());
    }

    /** The same arguments through picocli, then on the fast path: the same exit code, stdout and stderr. */
    private OfflineCommandsTest.Run same(String... args) {
        OfflineCommandsTest.Run slow = OfflineCommandsTest.bowctl(args);
        OfflineCommandsTest.Run quick = fast(args);
        String what = String.join(" ", args);
        assertEquals(slow.code(), quick.code(), "exit code of " + what + "; stderr " + slow.err() + " / " + quick.err());
        assertEquals(slow.out(), quick.out(), "stdout of " + what);
        assertEquals(slow.err(), quick.err(), "stderr of " + what);
        return quick;
    }

    @Test
    void answersLikePicocli() throws Exception {
        start();
        OfflineCommandsTest.Run table = same(withControl("status"));
        assertEquals(0, table.code());
        assertTrue(table.out().startsWith("mode               shared\n"), table.out());
        for (String line : table.out().split("\n")) {   // the layout printf("%-18s %s%n") gave
            String k = line.substring(0, line.indexOf(' ')), v = line.substring(Math.max(18, k.length()) + 1);
            assertEquals(String.format("%-18s %s", k, v), line);
        }
        assertTrue(same(withControl("status", "--json")).out().startsWith("{\"mode\":"));
        same("status", "--json", "--control=" + control());
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, same("status", "--control", dir.resolve("none.sock").toString()).code());
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, same("snapshot", "list", "--control", dir.resolve("none.sock").toString()).code());
        assertEquals(0, OfflineCommandsTest.bowctl(withControl("snapshot", "create", "--name", "one")).code());
        assertEquals(0, fast(withControl("snapshot", "create", "two", "--writable")).code());
        assertEquals(0, same(withControl("snapshot", "list")).code());
        same(withControl("snapshot", "list", "--json"));
        assertEquals(ExitCodes.USAGE, same(withControl("snapshot", "delete", "nosuch")).code());
        assertEquals(ExitCodes.USAGE, same(withControl("snapshot", "create", "one")).code(), "the name is taken");
        assertEquals(ExitCodes.USAGE, same(withControl("snapshot", "create", "12")).code(), "all digits");
        same(withControl("trim", "--offset", "0", "--length", "4096"));
        same(withControl("commit", "--record", dir.resolve("none.rec").toString()));
        same(withControl("trim", "--offset", "1", "--length", "4096"));   // not a multiple of 512
        assertEquals(0, fast(withControl("snapshot", "delete", "two")).code());
        assertEquals("1 snapshot", fast(withControl("snapshot", "list")).out().lines().reduce((a, b) -> b).orElseThrow().substring(0, 10));
        OfflineCommandsTest.Run down = fast(withControl("shutdown"));
        assertEquals(0, down.code(), down.err());
        assertEquals("shutting down\n", down.out());
    }

    @Test
    void aBowctlProcessLoadsNoPicocliClass() throws Exception {
        Path log = dir.resolve("classes.txt");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xlog:class+load=info:file=" + log, "-cp", System.getProperty("java.class.path"), "bow.ctl.Main",
                "status", "--json", "--control", dir.resolve("none.sock").toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, p.exitValue(), output);
        assertTrue(output.contains("bowd is not running"), output);
        String classes = Files.readString(log);
        assertTrue(classes.contains("bow.ctl.StatusCommand"), "the log lists the classes loaded");
        assertFalse(classes.contains("picocli."), "status on the fast path loaded picocli");

        // And --help still goes through picocli (and lists every command).
        Process help = new ProcessBuilder(List.of(cmd.get(0), "-cp", System.getProperty("java.class.path"), "bow.ctl.Main", "--help"))
                .redirectErrorStream(true).start();
        String usage = new String(help.getInputStream().readAllBytes());
        assertTrue(help.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, help.exitValue(), usage);
        for (String c : Bowctl.COMMANDS.keySet()) assertTrue(usage.contains("  " + c + " "), c + " in\n" + usage);
    }
}
