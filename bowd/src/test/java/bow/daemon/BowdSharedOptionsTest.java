package bow.daemon;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** bowd --mode shared refuses what it cannot take, clearly and before any device is opened. */
class BowdSharedOptionsTest {
    @TempDir Path dir;

    record Run(int code, String err) {}

    /** bowd in-process; the device and COW paths do not exist, so a refusal must come before they are opened. */
    Run bowd(String... extra) {
        List<String> args = new ArrayList<>(List.of("--device", dir.resolve("missing-origin.img").toString(),
                "--control", dir.resolve("control.sock").toString(), "--socket", dir.resolve("nbd.sock").toString()));
        args.addAll(List.of(extra));
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new Bowd());
        cl.setErr(new PrintWriter(err, true));
        int code = cl.execute(args.toArray(String[]::new));
        return new Run(code, err.toString());
    }

    String cow() { return dir.resolve("missing-cow.img").toString(); }

    @Test
    void sharedModeNeedsACow() {
        Run r = bowd("--mode", "shared");
        assertEquals(1, r.code(), r.err());
        assertEquals("bowd: --mode shared needs --cow PATH\n", r.err());
        assertFalse(Files.exists(dir.resolve("control.sock")));
    }

    @Test
    void persistentModeOnlyFlagsAreRefusedByName() {
        Run r = bowd("--mode", "shared", "--cow", cow(), "--overflow");
        assertEquals(1, r.code(), r.err());
        assertTrue(r.err().startsWith("bowd: --overflow is not for --mode shared"), r.err());
        assertTrue(r.err().contains("ENOSPC"), r.err());
        r = bowd("--mode", "shared", "--cow", cow(), "--snapshot-writable");
        assertTrue(r.err().startsWith("bowd: --snapshot-writable is not for --mode shared"), r.err());
        assertTrue(r.err().contains("bowctl snapshot create --writable"), r.err());
        r = bowd("--mode", "shared", "--cow", cow(), "--force", "--resume");
        assertEquals(1, r.code(), r.err());
        assertTrue(r.err().startsWith("bowd: --force, --resume are not for --mode shared"), r.err());
    }

    @Test
    void chunkSizeIsAPowerOfTwoFrom8To2048() {
        for (String bad : List.of("4", "48", "4096", "-8")) {
            Run r = bowd("--mode", "shared", "--cow", cow(), "--chunk-size", bad);
            assertEquals(1, r.code(), r.err());
            assertTrue(r.err().startsWith("bowd: --chunk-size " + bad + ": "), r.err());
            assertTrue(r.err().contains("from 8 to 2048 sectors"), r.err());
        }
        // A good size passes the checks: what fails then is opening the (missing) origin.
        Run r = bowd("--mode", "shared", "--cow", cow(), "--chunk-size", "2048");
        assertEquals(1, r.code(), r.err());
        assertFalse(r.err().contains("--chunk-size"), r.err());
        assertTrue(r.err().contains("missing-origin.img"), r.err());
    }

    @Test
    void unknownModeNamesTheThree() {
        Run r = bowd("--mode", "thin");
        assertEquals(1, r.code(), r.err());
        assertEquals("bowd: unknown --mode thin (bow, persistent or shared)\n", r.err());
    }
}
