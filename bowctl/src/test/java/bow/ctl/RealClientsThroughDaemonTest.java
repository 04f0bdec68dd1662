package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static bow.testing.HostTools.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * nbdinfo, qemu-io, nbdcopy and fio's nbd engine against bowd itself (a separate
 * process, bow mode, during a checkpoint), then an offline rollback that must
 * give back the image as it was at checkpoint start outside the free half.
 */
class RealClientsThroughDaemonTest {
    static final long SIZE = 512L << 20;
    static final long HALF = SIZE / 2;

    @TempDir Path dir;
    Process daemon;

    @AfterEach
    void tearDown() throws Exception {
        if (daemon != null && daemon.isAlive()) {
            daemon.destroyForcibly();
            daemon.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void realClientsDuringACheckpointThenRollback() throws Exception {
        HostTools.requireTools("nbdinfo", "qemu-io", "nbdcopy", "fio");
        Path img = dir.resolve("disk.img");
        byte[] start = new byte[(int) SIZE];
        new Random(9).nextBytes(start);
        Files.write(img, start);
        Path sock = dir.resolve("nbd.sock"), control = dir.resolve("control.sock");
        daemon = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "bow.daemon.Bowd",
                "--device", img.toString(), "--socket", sock.toString(), "--control", control.toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("bowd.log").toFile()).start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!(Files.exists(sock) && Files.exists(control))) {
            assertTrue(daemon.isAlive() && System.nanoTime() < end, () -> "bowd did not start: " + log());
            Thread.sleep(50);
        }
        String uri = "nbd+unix:///?socket=" + sock;

        // The second half is free space; then the checkpoint.
        assertEquals(0, Ext4EndToEndTest.bowctl("trim", "--offset", "" + HALF, "--length", "" + HALF, "--control", control.toString()).code());
        assertEquals(0, Ext4EndToEndTest.bowctl("checkpoint", "start", "--control", control.toString()).code());

        String info = run(List.of("nbdinfo", "--json", uri)).checkOk();
        assertTrue(info.replace(" ", "").contains("\"export-size\":" + SIZE), info);
        assertTrue(info.replace(" ", "").contains("\"can_flush\":true"), info);
        assertTrue(info.replace(" ", "").contains("\"block_size_preferred\":4096"), info);

        // qemu-io: write, read back, discard, write-zeroes, flush (first 8 MiB, block 0 included).
        run(List.of("qemu-io", "-f", "raw", uri,
                "-c", "write -P 0xab 0 4M", "-c", "read -P 0xab 0 4M",
                "-c", "write -z 4M 1M", "-c", "read -P 0 4M 1M",
                "-c", "discard 5M 1M", "-c", "flush")).checkOk();

        // nbdcopy: 64 MiB in at offset 0 (backed up first: those blocks held data), then the whole export out.
        Path in = dir.resolve("in.bin");
        byte[] data = new byte[64 << 20];
        new Random(10).nextBytes(data);
        Files.write(in, data);
        run(List.of("nbdcopy", in.toString(), uri), 300).checkOk();
        Path out = dir.resolve("out.bin");
        run(List.of("nbdcopy", uri, out.toString()), 300).checkOk();
        byte[] copied = Files.readAllBytes(out);
        assertEquals(SIZE, copied.length);
        assertArrayEquals(sha(data, 0, data.length), sha(copied, 0, data.length), "what nbdcopy wrote reads back");
        assertArrayEquals(sha(start, 64 << 20, (int) HALF - (64 << 20)), sha(copied, 64 << 20, (int) HALF - (64 << 20)),
                "the rest of the used half is untouched");

        // fio's nbd engine with verification, on blocks that held data at checkpoint start.
        run(List.of("fio", "--name=verify", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite", "--bs=4k",
                "--offset=128M", "--size=32M", "--iodepth=16", "--verify=crc32c", "--do_verify=1",
                "--verify_fatal=1", "--verify_state_save=0", "--end_fsync=1"), 300).checkOk();

        assertEquals(0, Ext4EndToEndTest.bowctl("shutdown", "--control", control.toString()).code());
        assertTrue(daemon.waitFor(30, TimeUnit.SECONDS));

        Ext4EndToEndTest.Run rb = Ext4EndToEndTest.bowctl("rollback", "--device", img.toString(), "--yes");
        assertEquals(0, rb.code(), rb.toString());
        byte[] now = Files.readAllBytes(img);
        assertTrue(Arrays.equals(start, 0, (int) HALF, now, 0, (int) HALF), "the used half is exactly as at checkpoint start");
    }

    private String log() {
        try {
            return Files.readString(dir.resolve("bowd.log"));
        } catch (Exception e) {
            return e.toString();
        }
    }

    static byte[] sha(byte[] b, int off, int len) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        md.update(b, off, len);
        return md.digest();
    }
}
