package bow.daemon;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** bowd --direct: in --help, and a device or COW it cannot use with O_DIRECT stops the start with a message naming the flag. */
class BowdDirectOptionTest {
    private Path dir;

    @BeforeEach
    void makeDir() throws IOException {
        Path target = Path.of(System.getProperty("user.dir"), "target");   // not /tmp: it may be tmpfs
        Files.createDirectories(target);
        dir = Files.createTempDirectory(target, "bowd-direct");
    }

    @AfterEach
    void removeDir() throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        }
    }

    private String[] run(String... args) {
        StringWriter err = new StringWriter(), out = new StringWriter();
        CommandLine cl = new CommandLine(new Bowd());
        cl.setErr(new PrintWriter(err, true));
        cl.setOut(new PrintWriter(out, true));
        int code = cl.execute(args);
        return new String[] {Integer.toString(code), err.toString(), out.toString()};
    }

    @Test
    void helpDocumentsIt() {
        String[] r = run("--help");
        assertEquals("0", r[0]);
        assertTrue(r[2].contains("--direct") && r[2].contains("O_DIRECT"), r[2]);
    }

    @Test
    void aCowThatCannotBeUsedDirectStopsTheStartNamingTheFlag() throws IOException {
        Path origin = dir.resolve("origin.img"), cow = dir.resolve("odd.cow");
        Files.write(origin, new byte[1 << 20]);
        Files.write(cow, new byte[(1 << 20) + 100]);   // no multiple of any O_DIRECT alignment
        String[] r = run("--direct", "--mode", "persistent", "--device", origin.toString(), "--cow", cow.toString(),
                "--socket", dir.resolve("nbd.sock").toString(), "--control", dir.resolve("control.sock").toString());
        assertEquals("1", r[0], r[1]);
        assertTrue(r[1].contains("--direct: " + cow), r[1]);
        assertFalse(Files.exists(dir.resolve("control.sock")));
        assertFalse(Files.exists(dir.resolve("nbd.sock")));
    }
}
