package bow.ctl;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * bowd as a real child process (its own JVM, signals, exit code), started with
 * the test class path; sockets live in a temp directory.
 */
final class BowdProcess implements AutoCloseable {
    final Process process;
    final Path control;
    final Path nbd;
    final Path log;

    private BowdProcess(Process process, Path control, Path nbd, Path log) {
        this.process = process;
        this.control = control;
        this.nbd = nbd;
        this.log = log;
    }

    static Process launch(Path dir, Path log, List<String> args) throws IOException {
        return launch(dir, log, List.of(), args);
    }

    static Process launch(Path dir, Path log, List<String> jvmArgs, List<String> args) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(jvmArgs);
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("bow.daemon.Bowd");
        cmd.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().put("BOW_HOME", dir.resolve("home").toString());
        pb.environment().put("BOW_RUN", dir.resolve("run").toString());
        return pb.start();
    }

    /** Starts bowd and waits (hang guard only) until its control socket answers. */
    static BowdProcess start(Path dir, String... args) throws Exception {
        return start(dir, List.of(), args);
    }

    /** As {@link #start(Path, String...)}, with options for bowd's JVM (a heap limit, say). */
    static BowdProcess start(Path dir, List<String> jvmArgs, String... args) throws Exception {
        Path control = dir.resolve("control.sock"), nbd = dir.resolve("nbd.sock");
        Files.deleteIfExists(control);
        Path log = Files.createTempFile(dir, "bowd", ".log");
        List<String> all = new ArrayList<>(List.of("--control", control.toString(), "--socket", nbd.toString()));
        all.addAll(List.of(args));
        Process p = launch(dir, log, jvmArgs, all);
        BowdProcess b = new BowdProcess(p, control, nbd, log);
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            if (!p.isAlive()) fail("bowd exited " + p.exitValue() + " while starting:\n" + b.output());
            if (Files.exists(nbd) && OfflineCommandsTest.bowctl("status", "--control", control.toString()).code() == 0) return b;
            if (System.nanoTime() > end) {
                p.destroyForcibly();
                fail("bowd did not start:\n" + b.output());
            }
            Thread.sleep(50);
        }
    }

    String output() throws IOException { return Files.readString(log); }

    /** Waits for the exit (hang guard) and returns the exit code. */
    int waitFor() throws Exception {
        if (!process.waitFor(60, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            fail("bowd did not exit:\n" + output());
        }
        return process.exitValue();
    }

    void kill9() throws Exception {
        process.destroyForcibly();   // SIGKILL
        process.waitFor(30, TimeUnit.SECONDS);
    }

    @Override
    public void close() throws Exception {
        if (process.isAlive()) {
            process.destroy();
            if (!process.waitFor(30, TimeUnit.SECONDS)) process.destroyForcibly();
        }
    }
}
