package bow.blockdev;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * An interrupt of a thread inside FileChannel I/O closes the channel for every thread.
 * The device must hide that: the op completes, the interrupt flag is kept, other threads'
 * I/O goes on, and the device stays usable.
 */
class FileBlockDeviceInterruptTest {
    @TempDir Path dir;

    @Test
    void anInterruptedCallerStillGetsItsIoAndKeepsItsFlag() throws Exception {
        Path img = dir.resolve("i.img");
        FileBlockDevice.createSparse(img, 1 << 20);
        try (FileBlockDevice dev = FileBlockDevice.open(img, false)) {
            byte[] data = new byte[4096];
            new Random(1).nextBytes(data);
            Thread.currentThread().interrupt();
            dev.write(8192, ByteBuffer.wrap(data));
            assertTrue(Thread.interrupted(), "the interrupt flag is restored after a write");
            Thread.currentThread().interrupt();
            dev.flush();
            assertTrue(Thread.interrupted(), "and after a flush");
            ByteBuffer back = ByteBuffer.allocate(4096);
            Thread.currentThread().interrupt();
            dev.read(8192, back);
            assertTrue(Thread.interrupted(), "and after a read");
            assertArrayEquals(data, back.array());
            // and without an interrupt, still fine
            ByteBuffer again = ByteBuffer.allocate(4096);
            dev.read(8192, again);
            assertArrayEquals(data, again.array());
        } finally {
            Thread.interrupted();
        }
    }

    @Test
    void concurrentIoSurvivesInterruptStorms() throws Exception {
        final int threads = 4;
        final int region = 3 << 20;          // each thread owns one region; large I/O crosses the 1 MiB slice size
        final long millis = Long.getLong("bow.test.interruptMillis", 2500);
        Path img = dir.resolve("storm.img");
        FileBlockDevice.createSparse(img, (long) threads * region + 65536);
        byte[][] model = new byte[threads][region];
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong ops = new AtomicLong(), interruptsSeen = new AtomicLong();
        long seed = new Random().nextLong();
        try (FileBlockDevice dev = FileBlockDevice.open(img, false)) {
            List<Thread> workers = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final int id = t;
                workers.add(new Thread(() -> {
                    Random r = new Random(seed + id);
                    long base = (long) id * region;
                    try {
                        while (!stop.get()) {
                            int len = r.nextInt(8) == 0 ? (1 << 20) + r.nextInt(1 << 21) : 1 + r.nextInt(65536);
                            int off = r.nextInt(region - len + 1);
                            switch (r.nextInt(4)) {
                                case 0, 1 -> {
                                    byte[] d = new byte[len];
                                    r.nextBytes(d);
                                    ByteBuffer b = r.nextBoolean() ? ByteBuffer.wrap(d) : ByteBuffer.allocateDirect(len).put(d).flip();
                                    dev.write(base + off, b);
                                    assertFalse(b.hasRemaining(), "write consumed its buffer");
                                    System.arraycopy(d, 0, model[id], off, len);
                                }
                                case 2 -> {
                                    ByteBuffer b = ByteBuffer.allocate(len);
                                    dev.read(base + off, b);
                                    assertFalse(b.hasRemaining(), "read filled its buffer");
                                    if (!Arrays.equals(b.array(), 0, len, model[id], off, off + len)) {
                                        throw new AssertionError("thread " + id + ": read at " + off + "+" + len + " differs from what was written");
                                    }
                                }
                                default -> dev.flush();
                            }
                            ops.incrementAndGet();
                            if (Thread.interrupted()) interruptsSeen.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        errors.add(new AssertionError("thread " + id + " (seed " + seed + "): " + e, e));
                    }
                }, "io-" + t));
            }
            workers.forEach(Thread::start);
            Thread interrupter = new Thread(() -> {
                Random r = new Random(seed);
                while (!stop.get()) {
                    workers.get(r.nextInt(threads)).interrupt();
                    try {
                        Thread.sleep(0, 200_000 + r.nextInt(800_000));
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "interrupter");
            interrupter.start();
            Thread.sleep(millis);
            stop.set(true);
            interrupter.join(10_000);
            for (Thread w : workers) w.join(30_000);
            for (Thread w : workers) assertFalse(w.isAlive(), "worker " + w.getName() + " is stuck");
            if (!errors.isEmpty()) {
                AssertionError e = new AssertionError(errors.size() + " worker(s) failed, seed " + seed, errors.peek());
                throw e;
            }
            assertTrue(interruptsSeen.get() > 0, "the storm interrupted no I/O (" + ops.get() + " ops); the test proved nothing");
            assertTrue(dev.reopenCount() > 0, "no interrupt ever closed the channel; the test proved nothing");
            // still usable afterwards, and everything reads back as written
            dev.write((long) threads * region, ByteBuffer.wrap(new byte[] {1, 2, 3}));   // past the regions
            dev.flush();
            for (int t = 0; t < threads; t++) {
                ByteBuffer b = ByteBuffer.allocate(region);
                dev.read((long) t * region, b);
                assertArrayEquals(model[t], b.array(), "region " + t + " through the device (seed " + seed + ")");
            }
        }
        byte[] file = Files.readAllBytes(img);
        for (int t = 0; t < threads; t++) {
            assertArrayEquals(model[t], Arrays.copyOfRange(file, t * region, (t + 1) * region), "region " + t + " in the file");
        }
        System.out.println("interrupt storm: " + ops.get() + " ops, " + interruptsSeen.get() + " interrupted, seed " + seed);
    }
}
