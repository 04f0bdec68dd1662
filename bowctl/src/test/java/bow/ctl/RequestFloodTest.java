package bow.ctl;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * 200 connections each send the header of a 32 MiB write and one byte of its
 * payload, to bowd in bow mode during a checkpoint with a small heap, while a
 * real client keeps writing blocks that held data. bowd must not run out of
 * memory, the real client's writes must succeed or fail cleanly, SIGTERM must
 * stop bowd, and the rollback must give back every block that held data.
 */
class RequestFloodTest {
    static final long SIZE = 64L << 20, USED = 32L << 20;

    @TempDir Path dir;
    BowdProcess bowd;
    final List<SocketChannel> flood = new ArrayList<>();

    @AfterEach
    void tearDown() throws Exception {
        for (SocketChannel c : flood) c.close();
        LibnbdScript.stop(bowd);
    }

    @Test
    void twoHundredLargeWritesNeitherExhaustTheHeapNorCostTheRollback() throws Exception {
        Path script = LibnbdScript.install(dir);
        Path img = dir.resolve("disk.img");
        byte[] start = new byte[(int) SIZE];
        new Random(42).nextBytes(start);
        Files.write(img, start);
        bowd = BowdProcess.start(dir, List.of("-Xmx256m"), "--device", img.toString(), "--client-timeout", "5");
        String control = bowd.control.toString();
        assertEquals(0, OfflineCommandsTest.bowctl("trim", "--offset", "" + USED, "--length", "" + (SIZE - USED), "--control", control).code());
        assertEquals(0, OfflineCommandsTest.bowctl("checkpoint", "start", "--control", control).code());

        for (int i = 0; i < 200; i++) flood.add(floodOne(bowd.nbd, i));
        OfflineCommandsTest.Run during = OfflineCommandsTest.bowctl("status", "--json", "--control", control);
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"nbd_connections\"\\s*:\\s*(\\d+)").matcher(during.out());
        assertTrue(m.find(), during.toString());
        assertTrue(Integer.parseInt(m.group(1)) >= 200, "the flood is connected: " + during.out());
        // A real client overwrites data blocks meanwhile (each write needs a backup).
        Process client = LibnbdScript.start(script, "nbd+unix:///?socket=" + bowd.nbd, "scatter", 0, 8L << 20, 4096, 1, 7);
        assertTrue(client.waitFor(300, TimeUnit.SECONDS), "the real client hangs");
        String out = new String(client.getInputStream().readAllBytes());
        assertTrue(client.exitValue() == 0 || out.contains("Cannot allocate memory"), "real client:\n" + out);
        for (SocketChannel c : flood) c.close();
        flood.clear();

        OfflineCommandsTest.Run status = OfflineCommandsTest.bowctl("status", "--control", control);
        assertEquals(0, status.code(), status.toString());
        bowd.process.destroy();   // SIGTERM
        assertEquals(0, bowd.waitFor(), "bowd stops cleanly on SIGTERM:\n" + bowd.output());
        assertFalse(bowd.output().contains("OutOfMemoryError"), bowd.output());

        OfflineCommandsTest.Run verify = OfflineCommandsTest.bowctl("log", "verify", "--device", img.toString());
        assertEquals(0, verify.code(), verify.toString());
        OfflineCommandsTest.Run rb = OfflineCommandsTest.bowctl("rollback", "--device", img.toString(), "--yes");
        assertEquals(0, rb.code(), rb.toString());
        byte[] now = Files.readAllBytes(img);
        assertTrue(Arrays.equals(start, 0, (int) USED, now, 0, (int) USED), "every block that held data is back");
    }

    /** Fixed-newstyle handshake, then a 32 MiB WRITE header and one byte of payload; left open. */
    static SocketChannel floodOne(Path socket, int i) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        readFully(ch, 18);                                      // NBDMAGIC, IHAVEOPT, handshake flags
        ByteBuffer b = ByteBuffer.allocate(4 + 16);
        b.putInt(3);                                            // FIXED_NEWSTYLE | NO_ZEROES
        b.putLong(0x49484156454F5054L).putInt(1).putInt(0);     // IHAVEOPT, EXPORT_NAME, "" (default export)
        writeFully(ch, b.flip());
        readFully(ch, 10);                                      // export size, transmission flags
        ByteBuffer req = ByteBuffer.allocate(28 + 1);
        req.putInt(0x25609513).putShort((short) 0).putShort((short) 1).putLong(i)
                .putLong(40L << 20).putInt(32 << 20).put((byte) 0x5a);
        writeFully(ch, req.flip());
        return ch;
    }

    private static void readFully(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) if (ch.read(b) < 0) throw new IOException("server closed during the handshake");
    }

    private static void writeFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }
}
