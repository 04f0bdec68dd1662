package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.FaultDevice;
import bow.blockdev.testing.GateDevice;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * An I/O error or an Error at the n-th read, write or flush of the COW while
 * several threads write the origin: the snapshot must stay exact (online and
 * offline merges give back the start image), the engine must say what failed and
 * refuse every later write, and no thread may hang. A full COW still invalidates,
 * as the kernel does (PersistentEngineTest). Half the seeds end in a power cut of
 * origin and COW, whose durable images must merge back exactly. Runs {@code bow.test.seeds} seeds.
 */
class PersistentFaultTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);
    static final Duration T = Duration.ofSeconds(30);

    @Test
    void aCowFaultFencesWritesAndTheSnapshotStaysExact() throws Exception {
        int fenced = 0;
        for (long seed = 1; seed <= SEEDS; seed++) {
            Random r = new Random(seed);
            int size = 1 << 20;
            byte[] start = new byte[size];
            r.nextBytes(start);
            // Even seeds end in a power cut of both devices, odd seeds in an online rollback.
            boolean cut = seed % 2 == 0;
            PowerCutDevice originDisk = new PowerCutDevice(start);
            PowerCutDevice cowDisk = new PowerCutDevice(1 << 20);
            BlockDevice origin = originDisk;
            PowerCutDevice cowMem = cowDisk;
            FaultDevice cow = new FaultDevice(cowMem);
            PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(8, false, false));
            e.startCheckpoint();
            FaultDevice.Op op = FaultDevice.Op.values()[new int[] {0, 1, 3}[r.nextInt(3)]];
            long nth = 1 + r.nextInt(op == FaultDevice.Op.FLUSH ? 20 : 60);
            FaultDevice.Rule rule = r.nextInt(4) == 0
                    ? cow.throwNth(op, nth, () -> new OutOfMemoryError("injected"))
                    : cow.failNth(op, nth);
            BlockDevice o = e.exports().get("");
            List<GateDevice.Request> writers = new ArrayList<>();
            for (int w = 0; w < 3; w++) {
                Random wr = new Random(seed * 31 + w);
                writers.add(GateDevice.start("writer-" + w, () -> {
                    for (int i = 0; i < 40; i++) {
                        int off = 512 * wr.nextInt(size / 512 - 16);
                        byte[] data = new byte[512 * (1 + wr.nextInt(16))];
                        wr.nextBytes(data);
                        try {
                            o.write(off, ByteBuffer.wrap(data));
                        } catch (DeviceException | OutOfMemoryError ex) {
                            // refused: fine, as long as the snapshot stays exact
                        }
                    }
                }));
            }
            for (GateDevice.Request w : writers) w.join(T);   // none hangs
            if (rule.hits() > 0 && e.status().details().containsKey("error")) {
                fenced++;
                long s = seed;
                assertThrows(DeviceException.class, () -> o.write(0, ByteBuffer.allocate(512)),
                        () -> "seed " + s + ": a fenced engine refuses origin writes");
            }
            cow.clear();
            if (cut) {
                Random cr = new Random(seed * 7);
                cowDisk.crash(cr);
                originDisk.crash(cr);
                // What survived the cut merges back into the start image.
                MemoryBlockDevice o2 = new MemoryBlockDevice(originDisk.durableImage());
                PersistentMerge.run(o2, new MemoryBlockDevice(cowDisk.durableImage()), (d, t) -> {});
                assertArrayEquals(start, o2.snapshot(), "seed " + seed + ": offline merge after a fault at " + op + " #" + nth + " and a power cut");
                continue;
            }
            // Offline merge of what is on the COW right now gives back the start image ...
            MemoryBlockDevice o2 = new MemoryBlockDevice(originDisk.liveImage());
            PersistentMerge.run(o2, new MemoryBlockDevice(cowDisk.liveImage()), (d, t) -> {});
            assertArrayEquals(start, o2.snapshot(), "seed " + seed + ": offline merge after a fault at " + op + " #" + nth);
            // ... and so does the online rollback.
            e.rollback();
            assertArrayEquals(start, originDisk.liveImage(), "seed " + seed + ": online rollback after a fault at " + op + " #" + nth);
        }
        System.out.printf("PersistentFaultTest: %d seeds, %d fenced%n", SEEDS, fenced);
        assertTrue(fenced > SEEDS / 4, "faults hit copy-outs: " + fenced);
    }
}
