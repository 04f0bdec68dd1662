package bow.lifecycle;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Record updates are read-modify-write under the record's lock: concurrent updaters (threads, and
 * another process: bowctl against the daemon's low-space policy) never lose one another's change.
 */
class RecordConcurrencyTest {
    @TempDir Path dir;

    private static CheckpointRecord sample() {
        return CheckpointRecord.start("bow", "/dev/vdb", "", -1, "test");
    }

    @Test
    void threadsNeverLoseAnUpdate() throws Exception {
        Path f = dir.resolve("checkpoint.rec");
        sample().write(f);
        int n = 150;
        CountDownLatch go = new CountDownLatch(1);
        Throwable[] failed = {null};
        Thread counter = new Thread(() -> {
            try {
                go.await();
                for (int i = 0; i < n; i++) CheckpointRecord.update(f, r -> r.withRetries(r.retries(), r.bootAttempts() + 1));
            } catch (Throwable t) {
                failed[0] = t;
            }
        });
        counter.start();
        go.countDown();
        // Meanwhile the other updater changes another field of the same record, as a low-space abort would.
        for (int i = 0; i < n; i++) {
            String what = "abort " + i;
            CheckpointRecord.update(f, r -> r.withLowSpaceAction(what));
        }
        counter.join();
        assertNull(failed[0]);
        CheckpointRecord end = CheckpointRecord.read(f).orElseThrow();
        assertEquals(n, end.bootAttempts(), "an increment was lost");
        assertEquals("abort " + (n - 1), end.lowSpaceAction());
    }

    @Test
    void anotherProcessNeverLosesAnUpdate() throws Exception {
        Path f = dir.resolve("checkpoint.rec");
        sample().write(f);
        int n = 150;
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process child = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
                RecordUpdater.class.getName(), f.toString(), Integer.toString(n)).redirectErrorStream(true).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream()));
            assertEquals("ready", out.readLine());
            for (int i = 0; i < n; i++) CheckpointRecord.update(f, r -> r.withRetries(r.retries(), r.bootAttempts() + 1));
            assertTrue(child.waitFor(60, TimeUnit.SECONDS), "updater process did not finish");
            String rest = new String(child.getInputStream().readAllBytes());
            assertEquals(0, child.exitValue(), rest);
        } finally {
            child.destroyForcibly();
        }
        assertEquals(2 * n, CheckpointRecord.read(f).orElseThrow().bootAttempts(), "an update of one process was lost");
    }
}
