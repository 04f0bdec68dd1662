package bow.bowmode;

import bow.blockdev.DeviceException;
import bow.blockdev.testing.FaultDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * An I/O error, or an Error such as OutOfMemoryError, at the n-th read, write or
 * flush below the engine, while three writers, a discarder and a flusher run; then
 * a power cut. Whatever failed, the rollback must be exact, and once a backup
 * failed the engine must say so in its status and refuse every write.
 * {@code -Dbow.test.seeds=N} scales the count (CI default 300 runs).
 */
class BowEngineFaultTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);

    @Test
    void aFaultAnywhereLeavesAnExactRollback() throws Exception {
        int fenced = 0, faulted = 0;
        for (long seed = 300_000; seed < 300_000 + SEEDS; seed++) {
            Random r = new Random(seed);
            BowEngineConcurrentTest.Run run = new BowEngineConcurrentTest.Run(seed, true);
            FaultDevice.Op op = FaultDevice.Op.values()[r.nextInt(3) == 0 ? 3 : r.nextInt(2)];   // READ, WRITE or FLUSH
            long nth = 1 + r.nextInt(op == FaultDevice.Op.FLUSH ? 12 : 120);
            FaultDevice.Rule rule = r.nextInt(5) == 0
                    ? run.faults.throwNth(op, nth, () -> new OutOfMemoryError("injected at " + op + " " + nth))
                    : run.faults.failNth(op, nth);
            run.workload();
            if (rule.hits() > 0) faulted++;
            String error = run.eng.status().details().get("error");
            if (error != null) {
                fenced++;
                // Fenced: no write is acknowledged any more.
                long s = seed;
                assertThrows(DeviceException.class, () -> run.eng.write(run.size - run.bs, ByteBuffer.allocate(run.bs)),
                        () -> "seed " + s + ": a fenced engine refuses writes (" + error + ")");
            }
            run.disk.crash(new Random(seed * 3));
            BowEngineConcurrentTest.assertRollbackExact(run, "fault at " + op + " #" + nth + (error == null ? "" : ", " + error));
        }
        System.out.printf("BowEngineFaultTest: %d runs, %d hit their fault, %d fenced%n", SEEDS, faulted, fenced);
        assertTrue(faulted > SEEDS / 2, "most runs hit their fault: " + faulted);
        assertTrue(fenced > 0, "some faults hit a backup");
    }
}
