package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.*;

/** Races in persistent mode, each pinned down by holding one request at the exact point. */
class PersistentRaceTest {
    static final int CB = 512;   // chunk size 1 sector

    /** A COW whose header write with valid = 0 (the invalidation) waits on a latch. */
    static final class HoldInvalidation implements BlockDevice {
        final MemoryBlockDevice inner;
        final CountDownLatch reached = new CountDownLatch(1), release = new CountDownLatch(1);
        HoldInvalidation(MemoryBlockDevice inner) { this.inner = inner; }
        @Override public long size() { return inner.size(); }
        @Override public void read(long o, ByteBuffer b) throws IOException { inner.read(o, b); }
        @Override public void write(long o, ByteBuffer b) throws IOException {
            if (o == 0 && b.remaining() >= 16 && b.getInt(b.position()) == 0x536e4170 /* "SnAp" LE as big-endian read */
                    && b.get(b.position() + 4) == 0) {
                reached.countDown();
                try {
                    release.await(30, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            inner.write(o, b);
        }
        @Override public void discard(long o, long l) throws IOException { inner.discard(o, l); }
        @Override public void flush() throws IOException { inner.flush(); }
    }

    /** An origin whose next read at {@code holdAt} (once armed) waits on a latch. */
    static final class HoldRead implements BlockDevice {
        final MemoryBlockDevice inner;
        volatile long holdAt = -1;
        final CountDownLatch reached = new CountDownLatch(1), release = new CountDownLatch(1);
        HoldRead(MemoryBlockDevice inner) { this.inner = inner; }
        @Override public long size() { return inner.size(); }
        @Override public void read(long o, ByteBuffer b) throws IOException {
            if (o == holdAt) {
                holdAt = -1;
                reached.countDown();
                try {
                    release.await(30, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            inner.read(o, b);
        }
        @Override public void write(long o, ByteBuffer b) throws IOException { inner.write(o, b); }
        @Override public void discard(long o, long l) throws IOException { inner.discard(o, l); }
        @Override public void flush() throws IOException { inner.flush(); }
    }

    /**
     * A snapshot read that began while the snapshot was valid, and reaches a chunk after the
     * invalidation dropped the exceptions from memory (COW full; the header write with valid = 0
     * still in progress, state still CHECKPOINT), must fail with EIO: the chunk's exception is
     * gone, and the origin there holds new data, not the snapshot's.
     */
    @Test
    void aSnapshotReadOverlappingAnInvalidationNeverReturnsNewOriginData() throws Exception {
        byte[] init = new byte[16 * CB];
        Arrays.fill(init, (byte) 0x11);
        HoldRead origin = new HoldRead(new MemoryBlockDevice(init));
        HoldInvalidation cow = new HoldInvalidation(new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(2, 1)));
        PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(1, false, false));
        e.startCheckpoint();
        BlockDevice o = e.exports().get(""), snap = e.exports().get("snapshot");
        byte[] changed = new byte[CB];
        Arrays.fill(changed, (byte) 0x77);
        o.write(4L * CB, ByteBuffer.wrap(changed));   // chunk 4: exception 1 of 2
        o.write(5L * CB, ByteBuffer.wrap(changed));   // chunk 5: exception 2 of 2, the COW is full

        // 1. a snapshot read of chunks 3..5 stops inside its origin read of chunk 3
        origin.holdAt = 3L * CB;
        AtomicReference<Object> readResult = new AtomicReference<>();
        Thread reader = new Thread(() -> {
            ByteBuffer b = ByteBuffer.allocate(3 * CB);
            try {
                snap.read(3L * CB, b);
                readResult.set(b.array());
            } catch (Throwable x) {
                readResult.set(x);
            }
        });
        reader.start();
        assertTrue(origin.reached.await(30, TimeUnit.SECONDS));
        // 2. an origin write needing a third exception invalidates; its header write is held
        AtomicReference<Throwable> writer = new AtomicReference<>();
        Thread w = new Thread(() -> {
            try {
                o.write(8L * CB, ByteBuffer.wrap(changed));
            } catch (Throwable x) {
                writer.set(x);
            }
        });
        w.start();
        assertTrue(cow.reached.await(30, TimeUnit.SECONDS), "the invalidation never started");
        // 3. the read goes on to chunks 4 and 5, whose exceptions are gone from memory
        origin.release.countDown();
        reader.join(30_000);
        cow.release.countDown();
        w.join(30_000);
        Object r = readResult.get();
        if (r instanceof byte[] data) {
            assertArrayEquals(Arrays.copyOfRange(init, 3 * CB, 6 * CB), data,
                    "a snapshot read returned the origin's new data as the snapshot's");
        } else {
            assertTrue(r instanceof DeviceException d && d.errno() == Errno.EIO, "expected EIO, got " + r);
        }
        assertNull(writer.get(), "the origin write goes through once valid = 0 is durable");
        assertEquals(PersistentEngine.State.INVALID, e.state());
    }
}
