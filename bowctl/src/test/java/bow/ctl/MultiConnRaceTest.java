package bow.ctl;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The race that real clients hit most easily (multi-conn is advertised): one
 * connection fills free blocks while a second trims the same blocks and two more
 * overwrite blocks that held data, all with 16 requests in flight, through bowd
 * as a process. Then the log must verify and the offline rollback must give back
 * every block that held data at checkpoint start. Rounds from
 * {@code -Dbow.test.multiconn.rounds} (default 2).
 */
class MultiConnRaceTest {
    static final int ROUNDS = Integer.getInteger("bow.test.multiconn.rounds", 2);
    static final long SIZE = 128L << 20, USED = 64L << 20;

    @TempDir Path dir;
    BowdProcess bowd;

    @AfterEach
    void tearDown() throws Exception {
        LibnbdScript.stop(bowd);
    }

    @Test
    void fillTrimAndOverwriteOnFourConnections() throws Exception {
        Path script = LibnbdScript.install(dir);
        for (int round = 0; round < ROUNDS; round++) {
            Path img = dir.resolve("disk" + round + ".img");
            byte[] start = new byte[(int) SIZE];
            new Random(round).nextBytes(start);
            Files.write(img, start);
            bowd = BowdProcess.start(dir, "--device", img.toString());
            String control = bowd.control.toString();
            assertEquals(0, OfflineCommandsTest.bowctl("trim", "--offset", "" + USED, "--length", "" + (SIZE - USED), "--control", control).code());
            assertEquals(0, OfflineCommandsTest.bowctl("checkpoint", "start", "--control", control).code());
            String uri = "nbd+unix:///?socket=" + bowd.nbd;
            long freeAt = USED, freeLen = 32L << 20;
            List<Process> clients = new ArrayList<>();
            clients.add(LibnbdScript.start(script, uri, "fill", freeAt, freeLen, 65536, 6, round * 10 + 1));
            clients.add(LibnbdScript.start(script, uri, "trim", freeAt, freeLen, 65536, 150, round * 10 + 2));
            clients.add(LibnbdScript.start(script, uri, "scatter", 0, 32L << 20, 4096, 1, round * 10 + 3));
            clients.add(LibnbdScript.start(script, uri, "scatter", 16L << 20, 32L << 20, 4096, 1, round * 10 + 4));
            for (Process p : clients) {
                assertTrue(p.waitFor(300, TimeUnit.SECONDS), "client hangs");
                String out = new String(p.getInputStream().readAllBytes());
                // A write may be refused with ENOSPC if free space runs out; nothing else may fail.
                assertTrue(p.exitValue() == 0 || out.contains("No space left"), "client failed:\n" + out);
            }
            OfflineCommandsTest.bowctl("shutdown", "--control", control);   // its exit code is ShutdownCommand's test
            assertTrue(bowd.process.waitFor(60, TimeUnit.SECONDS), "bowd stops");
            OfflineCommandsTest.Run verify = OfflineCommandsTest.bowctl("log", "verify", "--device", img.toString());
            assertEquals(0, verify.code(), "round " + round + ": " + verify);
            OfflineCommandsTest.Run rb = OfflineCommandsTest.bowctl("rollback", "--device", img.toString(), "--yes");
            assertEquals(0, rb.code(), "round " + round + ": " + rb);
            byte[] now = Files.readAllBytes(img.toAbsolutePath());
            assertTrue(Arrays.equals(start, 0, (int) USED, now, 0, (int) USED),
                    "round " + round + ": every block that held data is as at checkpoint start");
        }
    }

}
