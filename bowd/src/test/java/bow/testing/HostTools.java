package bow.testing;

import org.junit.jupiter.api.Assumptions;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * For tests that need root, FUSE or Debian tools: in CI (CI=true) a missing one
 * fails the test; elsewhere the test is skipped with a message naming it.
 */
public final class HostTools {
    private HostTools() {}

    public static boolean inCi() { return "true".equals(System.getenv("CI")); }

    public static void require(boolean present, String what) {
        if (present) return;
        if (inCi()) fail(what + " (CI must provide it)");
        Assumptions.assumeTrue(false, what + ": skipping outside CI");
    }

    public static void requireTools(String... tools) {
        for (String t : tools) require(onPath(t), t + " is not installed");
    }

    public static void requireRootAndFuse() {
        require(isRoot(), "root is needed");
        require(Files.exists(Path.of("/dev/fuse")), "/dev/fuse is needed");
    }

    public static boolean isRoot() { return bow.blockdev.LinuxNative.getuid() == 0; }

    public static boolean onPath(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(File.pathSeparator)) {
            if (Files.isExecutable(Path.of(d, tool))) return true;
        }
        for (String d : List.of("/usr/sbin", "/sbin")) if (Files.isExecutable(Path.of(d, tool))) return true;
        return false;
    }

    /** A finished command: exit code and combined output. */
    public record Result(List<String> command, int code, String output) {
        public String checkOk() {
            if (code != 0) fail(String.join(" ", command) + " exited " + code + ": " + output);
            return output;
        }
    }

    public static Result run(List<String> command) throws IOException, InterruptedException {
        return run(command, 120);
    }

    public static Result run(List<String> command, int timeoutSeconds) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        p.getOutputStream().close();
        byte[][] out = new byte[1][];
        Thread reader = new Thread(() -> {
            try {
                out[0] = p.getInputStream().readAllBytes();
            } catch (IOException e) {
                out[0] = new byte[0];
            }
        });
        reader.start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(String.join(" ", command) + " did not finish in " + timeoutSeconds + " s");
        }
        reader.join();
        return new Result(command, p.exitValue(), new String(out[0], StandardCharsets.UTF_8));
    }
}
