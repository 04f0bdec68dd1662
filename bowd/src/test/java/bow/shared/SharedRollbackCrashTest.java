package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.PowerSupply;
import bow.engine.SnapshotEngine;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static bow.shared.SharedConcurrencyTest.intProp;
import static bow.shared.SharedConcurrencyTest.readAll;
import static bow.shared.SharedConcurrencyTest.seeds;
import static bow.shared.SharedConcurrencyTest.view;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The online rollback survives power cuts (origin and COW on one {@link PowerSupply}): cut at a
 * random operation or flush while it runs, the store is reopened and NOT told to roll back
 * again. The header records the rollback, so the reopened engine reads the origin as the target
 * at once and finishes the rollback in the background; a checkpoint rollback also deletes its
 * snapshot. Up to three cuts per run, the later ones during the resumed rollback.
 */
class SharedRollbackCrashTest {
    static final int S = 512, ORIGIN = 0, COW = 1;
    /** Reopens that found a rollback recorded and resumed it (each test asserts some). */
    static final java.util.concurrent.atomic.AtomicInteger resumes = new java.util.concurrent.atomic.AtomicInteger();
    static final SharedStore.Tuning SMALL = new SharedStore.Tuning(4, Leaf.bytesFor(2, 32), 16, 16);

    @Test
    void rollbackResumesAfterCuts() {
        int[] cut = {0};
        resumes.set(0);
        seeds("shared rollback resumed after cuts", Math.max(4, intProp("bow.test.crashes", 40) / 10), seed -> {
            if (run(new Random(seed), false)) cut[0]++;
        });
        if (Long.getLong("bow.test.seed") == null) {   // a replayed single seed need not be cut
            assertTrue(cut[0] > 0, "no run was cut");
            assertTrue(resumes.get() > 0, "no reopen resumed a recorded rollback");
        }
        System.out.println("SharedRollbackCrashTest: " + cut[0] + " runs cut, " + resumes.get() + " resumed rollbacks");
    }

    @Test
    void checkpointRollbackResumesAfterCutsAndDeletesTheCheckpoint() {
        int[] cut = {0};
        resumes.set(0);
        seeds("shared checkpoint rollback resumed after cuts", Math.max(4, intProp("bow.test.crashes", 40) / 10), seed -> {
            if (run(new Random(seed), true)) cut[0]++;
        });
        if (Long.getLong("bow.test.seed") == null) {   // a replayed single seed need not be cut
            assertTrue(cut[0] > 0, "no run was cut");
            assertTrue(resumes.get() > 0, "no reopen resumed a recorded rollback");
        }
        System.out.println("SharedRollbackCrashTest: " + cut[0] + " runs cut, " + resumes.get() + " resumed rollbacks");
    }

    /** A header naming a rollback target: check reports a target that is not live, open refuses it; a live one is a note. */
    @Test
    void checkJudgesTheRollbackTarget() throws Exception {
        int size = S * 8 * 32;
        MemoryBlockDevice origin = new MemoryBlockDevice(size), cow = new MemoryBlockDevice(size * 4 + (64 << 10));
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(8));
        e.createSnapshot("a", false);
        e.close();
        SharedFormat.Header h = SharedStore.readHeader(cow);
        for (int target : new int[] {0, 5}) {
            byte[] slot = new byte[h.chunkBytes()];
            cow.read((long) h.slot() * h.chunkBytes(), ByteBuffer.wrap(slot));
            ByteBuffer le = ByteBuffer.wrap(slot).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            le.putInt(96, SharedFormat.RB_ACTIVE).putInt(100, target).putLong(104, 3);
            le.putInt(SharedFormat.CRC_OFFSET, SharedFormat.crc(slot));
            MemoryBlockDevice c2 = new MemoryBlockDevice((int) cow.size());
            byte[] all = new byte[(int) cow.size()];
            cow.read(0, ByteBuffer.wrap(all));
            System.arraycopy(slot, 0, all, h.slot() * h.chunkBytes(), slot.length);
            c2.write(0, ByteBuffer.wrap(all));
            SharedCheck.Result res = SharedCheck.run(c2);
            if (target == 0) {
                assertTrue(res.clean(), "a rollback to a live snapshot is no problem: " + res.problems());
                assertTrue(res.notes().stream().anyMatch(n -> n.contains("rollback of the origin to snapshot 0")), "noted: " + res.notes());
            } else {
                assertFalse(res.clean());
                assertTrue(res.problems().stream().anyMatch(p -> p.problem().contains("rollback_target is snapshot 5")), "reported: " + res.problems());
                IOException ex = assertThrows(IOException.class, () -> SharedEngine.open(new MemoryBlockDevice(size), c2, new SharedEngine.Options(0)));
                assertTrue(ex.getMessage().contains("not a live snapshot"), ex.getMessage());
            }
        }
    }

    /**
     * A write ahead of the rollback, acknowledged by a flush, survives a cut: the flush waits
     * until the recorded resume point has passed the chunk, so the resumed rollback does not
     * roll the chunk back again over the write.
     */
    @Test
    void aWriteAheadOfTheRollbackAcknowledgedByAFlushSurvivesACut() throws Exception {
        Random r = new Random(7);
        int size = S * 8 * 64;
        byte[] init = new byte[size];
        r.nextBytes(init);
        PowerSupply p = new PowerSupply(init, new byte[size * 6 + (64 << 10)]);
        SharedEngine e = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(8), SMALL);
        e.createSnapshot("t", false);
        byte[] all = new byte[size];
        r.nextBytes(all);
        view(e, -1).write(0, ByteBuffer.wrap(all));     // the snapshot holds every chunk: the rollback has them all to do
        view(e, -1).flush();
        byte[] want = readAll(view(e, 0));
        byte[] mine = new byte[S];
        r.nextBytes(mine);
        SharedEngine.holdRollbacks = true;
        java.util.concurrent.ExecutorService x = java.util.concurrent.Executors.newSingleThreadExecutor();
        try {
            e.rollbackTo("t");
            long at = size - 8L * S;                        // the last chunk: far ahead of the rollback
            view(e, -1).write(at, ByteBuffer.wrap(mine));
            java.util.concurrent.Future<?> flush = x.submit(() -> { view(e, -1).flush(); return null; });
            Thread.sleep(300);
            assertFalse(flush.isDone(), "the flush waits for the rollback to pass the chunk written ahead of it");
            SharedEngine.holdRollbacks = false;
            flush.get(30, java.util.concurrent.TimeUnit.SECONDS);
            p.cutNow(r);
            e.awaitRollback();
        } catch (IOException cut) {
            assertTrue(p.dead(), "only the cut: " + cut);
        } finally {
            SharedEngine.holdRollbacks = false;
            x.shutdown();
        }
        p.reboot();
        SharedEngine again = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(0), SMALL);
        again.awaitRollback();
        byte[] expect = want.clone();
        System.arraycopy(mine, 0, expect, size - 8 * S, S);
        assertArrayEquals(expect, readAll(view(again, -1)), "rolled back, with the acknowledged write ahead of the rollback not rolled back again");
        assertArrayEquals(want, readAll(view(again, 0)), "the snapshot is intact");
        again.close();
    }

    /** Returns whether a cut happened during the rollback. */
    static boolean run(Random r, boolean checkpoint) throws Exception {
        int size = S * 8 * (48 + r.nextInt(48));
        byte[] init = new byte[size];
        r.nextBytes(init);
        PowerSupply p = new PowerSupply(init, new byte[size * 6 + (64 << 10)]);
        SharedEngine e = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(8), SMALL);
        int snaps = 1 + r.nextInt(3);
        for (int i = 0; i < snaps; i++) {
            e.createSnapshot(i == snaps - 1 && checkpoint ? SharedEngine.CHECKPOINT_NAME : "", r.nextBoolean());
            scribble(r, view(e, -1), size, 4 + r.nextInt(20));
        }
        for (SnapshotEngine.SnapshotInfo i : e.listSnapshots()) if (i.writable()) scribble(r, view(e, i.id()), size, r.nextInt(6));
        view(e, -1).flush();
        Map<Integer, byte[]> images = new HashMap<>();
        for (SnapshotEngine.SnapshotInfo i : e.listSnapshots()) images.put(i.id(), readAll(view(e, i.id())));
        List<Integer> ids = new ArrayList<>(images.keySet());
        int target = checkpoint ? ids.stream().filter(id -> e.exports().get("snapshot-" + SharedEngine.CHECKPOINT_NAME) == view(e, id)).findFirst().orElseThrow()
                : ids.get(r.nextInt(ids.size()));
        byte[] before = readAll(view(e, -1));
        byte[] want = images.get(target);

        arm(r, p);
        SharedEngine cur = e;
        boolean wasCut = false;
        try {
            if (checkpoint) e.rollback();
            else { e.rollbackTo(Integer.toString(target)); e.awaitRollback(); }
        } catch (IOException ex) {
            assertTrue(p.dead(), "only the power cut may fail the rollback: " + ex);
        }
        // Disarmed before asking: a background step (the checkpoint's reclaim) may meet an
        // armed cut after the rollback returned, between the question and the disarm.
        p.disarm();
        if (!p.dead()) {
            assertArrayEquals(want, readAll(view(e, -1)), "the origin is the target after an uncut rollback");
            e.close();
        } else {
            wasCut = true;
            for (int cuts = 1; ; cuts++) {
                assertTrue(cuts < 10, "the resumed rollback never finished");
                p.reboot();
                boolean again = cuts < 3 && r.nextBoolean();
                if (again) arm(r, p);
                boolean hold = !again && r.nextBoolean();
                SharedEngine.holdRollbacks = hold;      // keeps a resumed rollback from finishing before the checks below
                cur = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(0), SMALL);
                boolean resumed = "ROLLING_BACK".equals(cur.status().state());
                if (resumed) resumes.incrementAndGet();
                try {
                    // right after the reopen: never the half state
                    byte[] now = readAll(view(cur, -1));
                    if (resumed) {
                        assertTrue(cur.status().details().containsKey("rollback"), "status details name the rollback: " + cur.status().details());
                        assertArrayEquals(want, now, "the origin reads as the target while the rollback resumes");
                        if (hold) {
                            assertTrue(cur.readOnlyExports().contains("snapshot-" + target), "the target is read-only while rolled back to");
                            SharedEngine c0 = cur;
                            assertThrows(IllegalStateException.class, () -> c0.deleteSnapshot(Integer.toString(target)), "the target cannot be deleted");
                            assertThrows(IllegalStateException.class, () -> c0.createSnapshot("", false), "no create while rolling back");
                            assertArrayEquals(want, readAll(view(cur, -1)), "the origin still reads as the target");
                        }
                    } else if (!java.util.Arrays.equals(want, now)) {
                        assertArrayEquals(before, now, "no rollback recorded: the origin is the one before it (the record was not durable)");
                    }
                    SharedEngine.holdRollbacks = false;
                    if (!resumed) {
                        if (checkpoint && hasCheckpoint(cur)) cur.rollback();          // the user runs it again, as before
                        else if (!checkpoint) { cur.rollbackTo(Integer.toString(target)); cur.awaitRollback(); }
                    }
                    else {
                        if (!checkpoint && r.nextInt(4) == 0) cur.rollbackTo(Integer.toString(target));   // naming it again is harmless
                        cur.awaitRollback();
                    }
                } catch (IOException ex) {
                    assertTrue(p.dead(), "only the power cut may fail the resumed rollback: " + ex);
                    continue;
                } finally {
                    SharedEngine.holdRollbacks = false;
                }
                p.disarm();                // first, as above
                if (p.dead()) continue;    // the cut came after the rollback's last write
                break;
            }
            assertNotEquals("ROLLING_BACK", cur.status().state(), "the resumed rollback is over");
        }
        if (wasCut) {
            assertArrayEquals(want, readAll(view(cur, -1)), "the origin is the target after the resumed rollback");
            checkSnapshots(cur, images, checkpoint ? target : -1);
            assertTrue(cur.awaitReclaim(30_000));
            view(cur, -1).flush();
            cur.close();
        }
        // durable, and the store is clean
        p.reboot();
        SharedEngine fin = SharedEngine.open(p.plug(ORIGIN), p.plug(COW), new SharedEngine.Options(0), SMALL);
        assertNotEquals("ROLLING_BACK", fin.status().state(), "the finished rollback left no record");
        assertArrayEquals(want, readAll(view(fin, -1)), "the rolled-back origin is durable");
        checkSnapshots(fin, images, checkpoint ? target : -1);
        assertTrue(fin.awaitReclaim(30_000));
        fin.close();
        SharedCheck.Result res = SharedCheck.run(new MemoryBlockDevice(p.durableImage(COW)));
        assertTrue(res.clean(), "check: " + res.problems());
        return wasCut;
    }

    static void arm(Random r, PowerSupply p) {
        if (r.nextBoolean()) p.armOps(r.nextInt(120), r);
        else p.armFlush(r.nextInt(10), r);
    }

    static boolean hasCheckpoint(SharedEngine e) throws IOException {
        for (SnapshotEngine.SnapshotInfo i : e.listSnapshots()) if (SharedEngine.CHECKPOINT_NAME.equals(i.name())) return true;
        return false;
    }

    /** Every snapshot as it was before the rollback; {@code gone} (the checkpoint) no longer exists. */
    static void checkSnapshots(SharedEngine e, Map<Integer, byte[]> images, int gone) throws IOException {
        for (Map.Entry<Integer, byte[]> s : images.entrySet()) {
            if (s.getKey() == gone) {
                assertNull(e.exports().get("snapshot-" + gone), "the checkpoint snapshot is deleted after its rollback");
                assertFalse(hasCheckpoint(e), "no checkpoint snapshot remains");
                continue;
            }
            assertArrayEquals(s.getValue(), readAll(view(e, s.getKey())), "snapshot-" + s.getKey() + " intact");
        }
    }

    static void scribble(Random r, BlockDevice d, int size, int n) throws IOException {
        for (int i = 0; i < n; i++) {
            int len = S * (1 + r.nextInt(16));
            long off = (long) S * r.nextInt((size - len) / S + 1);
            byte[] b = new byte[len];
            r.nextBytes(b);
            d.write(off, ByteBuffer.wrap(b));
        }
    }
}
