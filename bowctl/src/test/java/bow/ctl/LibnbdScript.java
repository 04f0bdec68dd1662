package bow.ctl;

import bow.testing.HostTools;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** The multiconn.py client (test resource) run with Debian's python3 and its libnbd bindings. */
final class LibnbdScript {
    static final String PYTHON = "/usr/bin/python3";

    private LibnbdScript() {}

    /** Requires python3-libnbd (fails in CI, skips elsewhere) and copies the script into {@code dir}. */
    static Path install(Path dir) throws Exception {
        HostTools.require(Files.isExecutable(Path.of(PYTHON)) && HostTools.run(List.of(PYTHON, "-c", "import nbd")).code() == 0,
                "python3-libnbd (import nbd with " + PYTHON + ") is needed");
        Path script = dir.resolve("multiconn.py");
        try (InputStream in = LibnbdScript.class.getResourceAsStream("/multiconn.py")) {
            Files.copy(in, script);
        }
        return script;
    }

    /** Starts one client: {@code multiconn.py URI MODE OFFSET LENGTH UNIT PASSES SEED}. */
    static Process start(Path script, String uri, String mode, long off, long len, int unit, int passes, long seed)
            throws Exception {
        return new ProcessBuilder(PYTHON, script.toString(), uri, mode, "" + off, "" + len, "" + unit, "" + passes, "" + seed)
                .redirectErrorStream(true).start();
    }

    /** Kills a bowd left running by a failed test. */
    static void stop(BowdProcess bowd) throws Exception {
        if (bowd != null && bowd.process.isAlive()) {
            bowd.process.destroyForcibly();
            bowd.process.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
        }
    }
}
