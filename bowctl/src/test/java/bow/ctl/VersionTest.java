package bow.ctl;

import bow.daemon.BowVersion;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** {@code --version} of both commands prints the build's version (bowd in its own JVM). */
class VersionTest {
    @Test
    void bothCommandsPrintTheProjectVersion() throws Exception {
        String v = BowVersion.version();
        assertTrue(v.matches("\\d+\\.\\d+\\.\\d+.*"), "filtered from the POM: " + v);
        var r = OfflineCommandsTest.bowctl("--version");
        assertEquals(0, r.code());
        assertEquals("bowctl " + v, r.out().trim());
        var d = bow.testing.HostTools.run(List.of(java.nio.file.Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "bow.daemon.Bowd", "--version"), 60);
        assertEquals(0, d.code(), d.output());
        assertEquals("bowd " + v, d.output().trim());
    }
}
