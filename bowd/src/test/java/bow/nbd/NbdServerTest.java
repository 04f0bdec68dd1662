package bow.nbd;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static bow.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

/** Protocol tests against a hand-written client over a Unix socket. */
class NbdServerTest {
    private static final int SIZE = 8 << 20;

    @TempDir Path dir;
    private NbdServer server;
    private Path sock;

    @AfterEach
    void tearDown() {
        if (server != null) server.close();
    }

    private MemoryBlockDevice start(NbdServer.Options opts) throws IOException {
        MemoryBlockDevice dev = new MemoryBlockDevice(SIZE);
        start(Map.of("", dev), opts);
        return dev;
    }

    private void start(Map<String, BlockDevice> exports, NbdServer.Options opts) throws IOException {
        server = new NbdServer(exports, opts);
        sock = dir.resolve("nbd.sock");
        server.listenUnix(sock);
    }

    private static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void infoThenGoDescribeTheExport() throws Exception {
        MemoryBlockDevice dev = new MemoryBlockDevice(SIZE);
        start(Map.of("", dev, "disk", new MemoryBlockDevice(4096)),
                new NbdServer.Options().description("disk", "the disk"));
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
            assertEquals(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, c.handshakeFlags);
            c.sendOption(OPT_INFO, NbdTestClient.infoRequest("disk", INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE));
            Map<Integer, ByteBuffer> infos = new HashMap<>();
            List<NbdTestClient.OptionReply> rs = c.readOptionReplies();
            for (NbdTestClient.OptionReply r : rs) {
                assertEquals(OPT_INFO, r.option());
                if (r.type() == REP_INFO) {
                    ByteBuffer b = r.buf();
                    infos.put((int) b.getShort(), b);
                }
            }
            assertEquals(REP_ACK, rs.get(rs.size() - 1).type());
            ByteBuffer ex = infos.get(INFO_EXPORT);
            assertEquals(4096, ex.getLong());
            int flags = ex.getShort() & 0xffff;
            int want = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES
                    | TF_CAN_MULTI_CONN | TF_SEND_CACHE;
            assertEquals(want, flags);
            assertEquals("disk", utf8(infos.get(INFO_NAME)));
            assertEquals("the disk", utf8(infos.get(INFO_DESCRIPTION)));
            ByteBuffer bs = infos.get(INFO_BLOCK_SIZE);
            assertEquals(512, bs.getInt());
            assertEquals(4096, bs.getInt());
            assertEquals(32 << 20, bs.getInt());

            // INFO left us in option haggling; GO on the default export enters transmission.
            c.go("");
            assertEquals(SIZE, c.exportSize);
            byte[] data = pattern(4096, 1);
            assertEquals(0, c.call(0, CMD_WRITE, 8192, 4096, data).error());
            assertArrayEquals(data, Arrays.copyOfRange(dev.snapshot(), 8192, 8192 + 4096));
            c.request(0, CMD_DISC, 1, 0, 0, null);
            assertTrue(c.serverClosed());
        }
    }

    @Test
    void listNamesEveryExport() throws Exception {
        Map<String, BlockDevice> m = new LinkedHashMap<>();
        m.put("", new MemoryBlockDevice(512));
        m.put("a", new MemoryBlockDevice(512));
        m.put("b", new MemoryBlockDevice(512));
        start(m, new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_LIST, new byte[0]);
            List<String> names = new ArrayList<>();
            List<NbdTestClient.OptionReply> rs = c.readOptionReplies();
            for (NbdTestClient.OptionReply r : rs) {
                if (r.type() == REP_SERVER) {
                    ByteBuffer b = r.buf();
                    byte[] n = new byte[b.getInt()];
                    b.get(n);
                    names.add(new String(n, StandardCharsets.UTF_8));
                }
            }
            assertEquals(REP_ACK, rs.get(rs.size() - 1).type());
            assertEquals(List.of("", "a", "b"), names);
            c.sendOption(OPT_LIST, new byte[] {1});
            assertEquals(REP_ERR_INVALID, c.readOptionReply().type());
        }
    }

    @Test
    void unknownOptionsAreRefusedWithoutLosingSync() throws Exception {
        MemoryBlockDevice dev = start(new NbdServer.Options());
        dev.write(0, ByteBuffer.wrap(pattern(512, 7)));
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
            c.sendOption(0x1234, pattern(1000, 2));
            NbdTestClient.OptionReply r = c.readOptionReply();
            assertEquals(0x1234, r.option());
            assertEquals(REP_ERR_UNSUP, r.type());
            c.sendOption(OPT_STARTTLS, new byte[0]);
            assertEquals(REP_ERR_UNSUP, c.readOptionReply().type());
            c.sendOption(OPT_EXTENDED_HEADERS, new byte[0]);
            assertEquals(REP_ERR_UNSUP, c.readOptionReply().type());
            // Malformed GO: counts do not add up.
            byte[] bad = NbdTestClient.infoRequest("", INFO_NAME);
            c.sendOption(OPT_GO, Arrays.copyOf(bad, bad.length - 1));
            assertEquals(REP_ERR_INVALID, c.readOptionReply().type());
            c.go("");
            NbdTestClient.Reply rd = c.call(0, CMD_READ, 0, 512, null);
            assertEquals(0, rd.error());
            assertArrayEquals(pattern(512, 7), rd.data());
        }
    }

    @Test
    void unknownExportIsRefused() throws Exception {
        start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_GO, NbdTestClient.infoRequest("nope"));
            assertEquals(REP_ERR_UNKNOWN, c.readOptionReply().type());
            c.sendOption(OPT_INFO, NbdTestClient.infoRequest("nope"));
            assertEquals(REP_ERR_UNKNOWN, c.readOptionReply().type());
            // EXPORT_NAME cannot answer with an error: the server hangs up.
            c.sendOption(OPT_EXPORT_NAME, "nope".getBytes(StandardCharsets.UTF_8));
            assertTrue(c.serverClosed());
        }
    }

    @Test
    void exportNameSendsZeroesUnlessNegotiatedAway() throws Exception {
        start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_EXPORT_NAME, new byte[0]);
            ByteBuffer b = c.read(134);
            assertEquals(SIZE, b.getLong());
            assertTrue((b.getShort() & TF_HAS_FLAGS) != 0);
            while (b.hasRemaining()) assertEquals(0, b.get());
            assertEquals(0, c.call(0, CMD_FLUSH, 0, 0, null).error());
        }
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
            c.sendOption(OPT_EXPORT_NAME, new byte[0]);
            ByteBuffer b = c.read(10);
            assertEquals(SIZE, b.getLong());
            // Without the 124 zeroes the next bytes are already a reply.
            assertEquals(0, c.call(0, CMD_FLUSH, 0, 0, null).error());
        }
    }

    @Test
    void abortIsAcknowledgedAndCloses() throws Exception {
        start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_ABORT, new byte[0]);
            assertEquals(REP_ACK, c.readOptionReply().type());
            assertTrue(c.serverClosed());
        }
    }

    @Test
    void unknownClientFlagsClose() throws Exception {
        start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE | 0x100);
            assertTrue(c.serverClosed());
        }
    }

    @Test
    void commandsChangeTheDevice() throws Exception {
        for (boolean structured : new boolean[] {false, true}) {
            MemoryBlockDevice dev = start(new NbdServer.Options());
            try (NbdTestClient c = NbdTestClient.open(sock, "", structured)) {
                byte[] a = pattern(65536, 3);
                assertEquals(0, c.call(0, CMD_WRITE, 4096, a.length, a).error());
                assertEquals(0, c.call(CMD_FLAG_FUA, CMD_WRITE, 1 << 20, a.length, a).error());
                NbdTestClient.Reply r = c.call(0, CMD_READ, 4096, a.length, null);
                assertEquals(0, r.error());
                assertEquals(structured, r.isStructured());
                assertArrayEquals(a, NbdTestClient.readData(r));
                assertEquals(0, c.call(0, CMD_FLUSH, 0, 0, null).error());

                assertEquals(0, c.call(0, CMD_TRIM, 4096, 4096, null).error());
                assertEquals(0, c.call(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 12288, 8192, null).error());
                assertEquals(0, c.call(0, CMD_CACHE, 0, SIZE, null).error());
                byte[] img = dev.snapshot();
                byte[] expect = a.clone();
                Arrays.fill(expect, 0, 4096, (byte) 0);
                Arrays.fill(expect, 8192, 16384, (byte) 0);
                assertArrayEquals(expect, Arrays.copyOfRange(img, 4096, 4096 + a.length));
                assertArrayEquals(a, Arrays.copyOfRange(img, 1 << 20, (1 << 20) + a.length));
                assertArrayEquals(Arrays.copyOfRange(img, 4096, 4096 + a.length),
                        NbdTestClient.readData(c.call(0, CMD_READ, 4096, a.length, null)));
                // Zero-length requests are harmless.
                assertEquals(0, c.call(0, CMD_READ, 0, 0, null).error());
                assertEquals(0, c.call(0, CMD_WRITE, 0, 0, new byte[0]).error());
                // Last byte of the device is reachable.
                assertEquals(0, c.call(0, CMD_WRITE, SIZE - 1, 1, new byte[] {9}).error());
                assertArrayEquals(new byte[] {9}, NbdTestClient.readData(c.call(0, CMD_READ, SIZE - 1, 1, null)));
                assertTrue(server.bytesWritten() >= 2L * a.length);
                assertTrue(server.bytesRead() >= 2L * a.length);
            }
            server.close();
        }
    }

    @Test
    void badRequestsGetErrorsAndTheStreamStaysInSync() throws Exception {
        for (boolean structured : new boolean[] {false, true}) {
            start(new NbdServer.Options());
            try (NbdTestClient c = NbdTestClient.open(sock, "", structured)) {
                assertEquals(EINVAL, c.call(0, CMD_READ, SIZE - 512, 1024, null).error());
                assertEquals(EINVAL, c.call(0, CMD_READ, -4096L, 512, null).error(), "offset beyond 2^63");
                assertEquals(ENOSPC, c.call(0, CMD_WRITE, SIZE - 512, 1024, pattern(1024, 4)).error());
                assertEquals(EINVAL, c.call(0, CMD_TRIM, SIZE, 512, null).error(), "trim past the end is EINVAL (spec)");
                assertEquals(ENOSPC, c.call(0, CMD_WRITE_ZEROES, SIZE - 1, 2, null).error());
                assertEquals(EINVAL, c.call(0, CMD_CACHE, SIZE, 1, null).error());
                assertEquals(EOVERFLOW, c.call(0, CMD_READ, 0, (32 << 20) + 1, null).error());
                // An oversized write: its whole payload is drained, then the stream continues.
                assertEquals(EOVERFLOW, c.call(0, CMD_WRITE, 0, (33 << 20), new byte[33 << 20]).error());
                assertEquals(EINVAL, c.call(0, 99, 0, 0, null).error(), "unknown command");
                assertEquals(EINVAL, c.call(1 << 9, CMD_WRITE, 0, 512, pattern(512, 5)).error(), "unknown flag");
                assertEquals(EINVAL, c.call(0, CMD_BLOCK_STATUS, 0, 512, null).error(), "no meta context");
                if (!structured) {
                    assertEquals(EINVAL, c.call(CMD_FLAG_DF, CMD_READ, 0, 512, null).error());
                } else {
                    NbdTestClient.Reply r = c.call(0, CMD_READ, SIZE, 1, null);
                    assertEquals(REPLY_TYPE_ERROR, r.chunkType());
                    assertEquals(REPLY_FLAG_DONE, r.flags());
                    assertEquals(0, c.call(CMD_FLAG_DF, CMD_READ, 0, 512, null).error());
                }
                byte[] d = pattern(512, 6);
                assertEquals(0, c.call(0, CMD_WRITE, 0, 512, d).error());
                assertArrayEquals(d, NbdTestClient.readData(c.call(0, CMD_READ, 0, 512, null)));
            }
            server.close();
        }
    }

    @Test
    void flagsOnlyWhereTheSpecAllowsThemAndFlushTakesNoRange() throws Exception {
        MemoryBlockDevice dev = start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.open(sock, "", true)) {
            byte[] d = pattern(512, 40);
            assertEquals(EINVAL, c.call(CMD_FLAG_NO_HOLE, CMD_WRITE, 0, 512, d).error(), "NO_HOLE on WRITE");
            assertEquals(EINVAL, c.call(CMD_FLAG_REQ_ONE, CMD_READ, 0, 512, null).error(), "REQ_ONE on READ");
            assertEquals(EINVAL, c.call(CMD_FLAG_DF, CMD_WRITE, 0, 512, d).error(), "DF on WRITE");
            assertEquals(EINVAL, c.call(CMD_FLAG_DF, CMD_TRIM, 0, 512, null).error(), "DF on TRIM");
            assertEquals(EINVAL, c.call(0, CMD_FLUSH, 4096, 0, null).error(), "FLUSH with an offset");
            assertEquals(EINVAL, c.call(0, CMD_FLUSH, 0, 512, null).error(), "FLUSH with a length");
            assertArrayEquals(new byte[512], Arrays.copyOf(dev.snapshot(), 512), "refused writes changed nothing");
            // The same flags where they belong, and FUA anywhere, still work; the stream stayed in sync.
            assertEquals(0, c.call(CMD_FLAG_FUA, CMD_WRITE, 0, 512, d).error());
            assertEquals(0, c.call(CMD_FLAG_NO_HOLE | CMD_FLAG_FUA, CMD_WRITE_ZEROES, 512, 512, null).error());
            assertEquals(512, NbdTestClient.readData(c.call(CMD_FLAG_DF, CMD_READ, 0, 512, null)).length);
            assertEquals(0, c.call(CMD_FLAG_FUA, CMD_FLUSH, 0, 0, null).error());
            assertArrayEquals(d, Arrays.copyOf(dev.snapshot(), 512));
        }
    }

    @Test
    void anExportNameWithNulIsInvalidNotUnknown() throws Exception {
        start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_GO, NbdTestClient.infoRequest("a\0b"));
            assertEquals(REP_ERR_INVALID, c.readOptionReply().type());
            c.sendOption(OPT_INFO, NbdTestClient.infoRequest("\0"));
            assertEquals(REP_ERR_INVALID, c.readOptionReply().type());
            c.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, c.readOptionReply().type());
            c.sendOption(OPT_LIST_META_CONTEXT, NbdTestClient.metaRequest("x\0", BASE_ALLOCATION));
            assertEquals(REP_ERR_INVALID, c.readOptionReply().type());
            c.go("");   // still in sync
            assertEquals(SIZE, c.exportSize);
        }
    }

    @Test
    void readOnlyExportsRefuseWrites() throws Exception {
        MemoryBlockDevice ro = new MemoryBlockDevice(pattern(4096, 8));
        MemoryBlockDevice rw = new MemoryBlockDevice(4096);
        start(Map.of("ro", ro, "", rw), new NbdServer.Options().readOnlyExport("ro"));
        try (NbdTestClient c = NbdTestClient.open(sock, "ro", false)) {
            assertTrue((c.transmissionFlags & TF_READ_ONLY) != 0);
            assertEquals(0, c.transmissionFlags & (TF_SEND_TRIM | TF_SEND_WRITE_ZEROES));
            assertEquals(EPERM, c.call(0, CMD_WRITE, 0, 512, new byte[512]).error());
            assertEquals(EPERM, c.call(0, CMD_TRIM, 0, 512, null).error());
            assertEquals(EPERM, c.call(0, CMD_WRITE_ZEROES, 0, 512, null).error());
            assertArrayEquals(pattern(4096, 8), NbdTestClient.readData(c.call(0, CMD_READ, 0, 4096, null)));
            assertArrayEquals(pattern(4096, 8), ro.snapshot());
        }
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            assertEquals(0, c.transmissionFlags & TF_READ_ONLY);
            assertEquals(0, c.call(0, CMD_WRITE, 0, 512, pattern(512, 9)).error());
        }
        server.close();
        start(Map.of("", new MemoryBlockDevice(4096)), new NbdServer.Options().readOnly(true));
        try (NbdTestClient c = NbdTestClient.open(sock, "", true)) {
            assertTrue((c.transmissionFlags & TF_READ_ONLY) != 0);
            NbdTestClient.Reply r = c.call(0, CMD_WRITE, 0, 512, new byte[512]);
            assertEquals(EPERM, r.error());
            assertTrue(r.isStructured(), "errors carry a message when structured replies are on");
        }
    }

    @Test
    void deviceErrorsMapToWireErrors() throws Exception {
        BlockDevice failing = new ForwardingDevice(new MemoryBlockDevice(4096)) {
            @Override public void read(long offset, ByteBuffer dst) throws IOException {
                if (offset == 0) throw new DeviceException(Errno.ENOMEM, "test");
                if (offset == 512) throw new IOException("plain");
                throw new IllegalStateException("bug");
            }
        };
        start(Map.of("", failing), new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            assertEquals(ENOMEM, c.call(0, CMD_READ, 0, 512, null).error());
            assertEquals(EIO, c.call(0, CMD_READ, 512, 512, null).error());
            assertEquals(EIO, c.call(0, CMD_READ, 1024, 512, null).error());
        }
    }

    @Test
    void baseAllocationContext() throws Exception {
        start(new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
            c.sendOption(OPT_SET_META_CONTEXT, NbdTestClient.metaRequest("", BASE_ALLOCATION));
            assertEquals(REP_ERR_INVALID, c.readOptionReply().type(), "needs structured replies first");
            c.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, c.readOptionReply().type());
            c.structured = true;
            c.sendOption(OPT_LIST_META_CONTEXT, NbdTestClient.metaRequest(""));
            List<NbdTestClient.OptionReply> list = c.readOptionReplies();
            assertEquals(2, list.size());
            assertEquals(REP_META_CONTEXT, list.get(0).type());
            assertTrue(new String(list.get(0).data(), StandardCharsets.UTF_8).endsWith(BASE_ALLOCATION));
            c.sendOption(OPT_SET_META_CONTEXT, NbdTestClient.metaRequest("", "x-other:thing", BASE_ALLOCATION));
            List<NbdTestClient.OptionReply> set = c.readOptionReplies();
            assertEquals(REP_META_CONTEXT, set.get(0).type());
            int ctx = set.get(0).buf().getInt();
            assertEquals(REP_ACK, set.get(1).type());
            c.go("");
            NbdTestClient.Reply r = c.call(0, CMD_BLOCK_STATUS, 4096, 8192, null);
            assertEquals(REPLY_TYPE_BLOCK_STATUS, r.chunkType());
            ByteBuffer b = ByteBuffer.wrap(r.data());
            assertEquals(ctx, b.getInt());
            assertEquals(8192, b.getInt());
            assertEquals(0, b.getInt(), "reported as allocated data");
            assertEquals(EINVAL, c.call(0, CMD_BLOCK_STATUS, SIZE, 1, null).error());
        }
    }

    @Test
    void hostileClientsCostOnlyTheirOwnConnection() throws Exception {
        MemoryBlockDevice dev = start(new NbdServer.Options());
        try (NbdTestClient good = NbdTestClient.open(sock, "", false)) {
            // Garbage instead of an option.
            try (NbdTestClient bad = NbdTestClient.connect(sock)) {
                bad.greet(FLAG_C_FIXED_NEWSTYLE);
                bad.write(ByteBuffer.wrap(pattern(64, 10)));
                assertTrue(bad.serverClosed());
            }
            // Garbage instead of a request.
            try (NbdTestClient bad = NbdTestClient.open(sock, "", false)) {
                bad.write(ByteBuffer.wrap(pattern(28, 11)));
                assertTrue(bad.serverClosed());
            }
            // Half a write, then gone; and a read in flight when the client vanishes.
            try (NbdTestClient bad = NbdTestClient.open(sock, "", false)) {
                bad.request(0, CMD_READ, 1, 0, 1 << 20, null);
                bad.request(0, CMD_WRITE, 2, 0, 65536, new byte[1000]);
            }
            try (NbdTestClient bad = NbdTestClient.connect(sock)) {
                bad.write(ByteBuffer.wrap(new byte[] {1, 2, 3}));
            }
            byte[] d = pattern(4096, 12);
            assertEquals(0, good.call(0, CMD_WRITE, 0, 4096, d).error());
            assertArrayEquals(d, NbdTestClient.readData(good.call(0, CMD_READ, 0, 4096, null)));
            // The half-written request never reached the device.
            assertArrayEquals(d, Arrays.copyOf(dev.snapshot(), 4096));
            waitFor(() -> server.openConnections() == 1);
            assertEquals(1, server.openConnections());
        }
        waitFor(() -> server.openConnections() == 0);
    }

    /** A device whose reads at offset 0 wait until the test opens the gate. */
    private static final class GatedDevice extends ForwardingDevice {
        final CountDownLatch gate = new CountDownLatch(1);
        final CountDownLatch waiting = new CountDownLatch(1);
        final AtomicInteger flushes = new AtomicInteger();

        GatedDevice(byte[] init) { super(new MemoryBlockDevice(init)); }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            if (offset == 0) {
                waiting.countDown();
                try {
                    gate.await();
                } catch (InterruptedException e) {
                    throw new IOException(e);
                }
            }
            super.read(offset, dst);
        }

        @Override public void flush() { flushes.incrementAndGet(); }
    }

    @Test
    void repliesMayOvertakeAndStayWhole() throws Exception {
        byte[] init = pattern(SIZE, 13);
        for (boolean structured : new boolean[] {false, true}) {
            GatedDevice dev = new GatedDevice(init);
            start(Map.of("", dev), new NbdServer.Options().workers(4));
            try (NbdTestClient c = NbdTestClient.open(sock, "", structured)) {
                c.request(0, CMD_READ, 100, 0, 65536, null);
                dev.waiting.await();
                c.request(0, CMD_READ, 200, 65536, 65536, null);
                // The first read is stuck in the device, so the second one must answer first.
                NbdTestClient.Reply first = c.readReply(k -> 65536);
                assertEquals(200, first.cookie());
                assertArrayEquals(Arrays.copyOfRange(init, 65536, 131072), NbdTestClient.readData(first));
                dev.gate.countDown();
                NbdTestClient.Reply second = c.readReply(k -> 65536);
                assertEquals(100, second.cookie());
                assertArrayEquals(Arrays.copyOf(init, 65536), NbdTestClient.readData(second));
            }
            server.close();
        }
    }

    /**
     * Replies are queued and sent by the thread holding the write lock: a reply that comes
     * while another is stuck on the wire (the client not reading) is left to that sender,
     * whose thread must send it too once the wire moves, with nobody else left to do it.
     */
    @Test
    @org.junit.jupiter.api.Timeout(30)
    void aReplyQueuedBehindAStuckOneIsSentByItsSender() throws Exception {
        byte[] init = pattern(SIZE, 17);
        AtomicInteger reads = new AtomicInteger();
        MemoryBlockDevice mem = new MemoryBlockDevice(SIZE);
        mem.write(0, ByteBuffer.wrap(init));
        BlockDevice dev = new ForwardingDevice(mem) {
            @Override public void read(long offset, ByteBuffer dst) throws IOException {
                super.read(offset, dst);
                reads.incrementAndGet();
            }
        };
        start(Map.of("", dev), new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            int big = 4 << 20;   // far more than the socket buffers: its reply blocks until the client reads
            c.request(0, CMD_READ, 1, 0, big, null);
            waitFor(() -> reads.get() >= 1);
            c.request(0, CMD_READ, 2, big, 4096, null);
            waitFor(() -> reads.get() >= 2);
            Thread.sleep(100);   // the second reply is queued (its thread found the lock taken) or waits
            Map<Long, byte[]> got = new HashMap<>();
            for (int k = 0; k < 2; k++) {
                NbdTestClient.Reply r = c.readReply(cookie -> cookie == 1 ? big : 4096);
                assertEquals(0, r.error());
                got.put(r.cookie(), r.data());
            }
            assertArrayEquals(Arrays.copyOf(init, big), got.get(1L));
            assertArrayEquals(Arrays.copyOfRange(init, big, big + 4096), got.get(2L));
        }
    }

    @Test
    void manyPipelinedRequestsGetTheirOwnReplies() throws Exception {
        MemoryBlockDevice dev = start(new NbdServer.Options().maxInFlightRequests(4));
        int n = 200;
        int block = 16384;
        try (NbdTestClient c = NbdTestClient.open(sock, "", true)) {
            // Writes first (each to its own block), flushed, then reads of the same blocks.
            Map<Long, Integer> readLen = new HashMap<>();
            Thread sender = new Thread(() -> {
                try {
                    for (int i = 0; i < n; i++) c.request(0, CMD_WRITE, i, (long) i * block, block, pattern(block, 1000 + i));
                    for (int i = 0; i < n; i++) c.request(0, CMD_READ, n + i, (long) i * block, block, null);
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            });
            sender.start();
            boolean[] seen = new boolean[2 * n];
            for (int k = 0; k < 2 * n; k++) {
                NbdTestClient.Reply r = c.readReply(cookie -> cookie >= n ? block : 0);
                assertEquals(0, r.error());
                int cookie = (int) r.cookie();
                assertFalse(seen[cookie], "duplicate reply " + cookie);
                seen[cookie] = true;
                if (cookie >= n) {
                    // A read may overtake the write of its block; only a read after it sees the data.
                    byte[] got = NbdTestClient.readData(r);
                    byte[] want = pattern(block, 1000 + cookie - n);
                    assertTrue(Arrays.equals(want, got) || Arrays.equals(new byte[block], got),
                            "read " + cookie + " returned neither old nor new content");
                }
            }
            sender.join();
            for (int i = 0; i < n; i++) {
                assertArrayEquals(pattern(block, 1000 + i), Arrays.copyOfRange(dev.snapshot(), i * block, (i + 1) * block));
            }
        }
    }

    /**
     * The server reads requests ahead, several per system call: requests sent in one burst,
     * with payloads smaller and larger than its read-ahead buffer, refused writes whose
     * payload it must skip within that buffer, and a header split across two sends, each
     * get their own reply and leave the device as sent.
     */
    @Test
    void requestsSentInOneBurstAreReadAheadAndStayInSync() throws Exception {
        MemoryBlockDevice dev = start(new NbdServer.Options());
        int[] sizes = {512, 4096, 100, 8192, NbdConnection.READ_AHEAD / 2 + 512, 4096, 3 * NbdConnection.READ_AHEAD, 1, 4096};
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            java.io.ByteArrayOutputStream burst = new java.io.ByteArrayOutputStream();
            byte[][] sent = new byte[sizes.length][];
            long at = 0;
            long[] offsets = new long[sizes.length];
            for (int i = 0; i < sizes.length; i++) {
                sent[i] = pattern(sizes[i], 300 + i);
                offsets[i] = at;
                burst.write(header(CMD_WRITE, i, at, sizes[i]));
                burst.write(sent[i]);
                // A refused write after each: its payload is skipped, not taken as a header
                // (some longer than the read-ahead buffer: skipped there, then on the socket).
                int refused = i % 3 == 0 ? 2 * NbdConnection.READ_AHEAD + 100 : 1024;
                burst.write(header(CMD_WRITE, 100 + i, SIZE - 512, refused));
                burst.write(pattern(refused, 900 + i));
                at += sizes[i];
            }
            byte[] all = burst.toByteArray();
            c.write(ByteBuffer.wrap(all));
            // A header split over two sends, with a pause between.
            byte[] h = header(CMD_READ, 999, 0, 4096);
            c.write(ByteBuffer.wrap(h, 0, 11));
            Thread.sleep(50);
            c.write(ByteBuffer.wrap(h, 11, h.length - 11));
            Map<Long, Integer> errors = new HashMap<>();
            byte[] read = null;
            for (int k = 0; k < 2 * sizes.length + 1; k++) {
                NbdTestClient.Reply r = c.readReply(cookie -> cookie == 999 ? 4096 : 0);
                if (r.cookie() == 999) {
                    read = r.data();
                } else {
                    assertNull(errors.put(r.cookie(), r.error()), "a second reply for " + r.cookie());
                }
            }
            for (int i = 0; i < sizes.length; i++) {
                assertEquals(0, errors.get((long) i), "write " + i);
                assertEquals(ENOSPC, errors.get(100L + i), "refused write " + i);
                assertArrayEquals(sent[i], Arrays.copyOfRange(dev.snapshot(), (int) offsets[i], (int) offsets[i] + sizes[i]), "write " + i);
            }
            // The read may have run before the writes of its range landed: old or new bytes, whole.
            assertNotNull(read);
            assertEquals(0, c.call(0, CMD_FLUSH, 0, 0, null).error());
            assertArrayEquals(Arrays.copyOfRange(dev.snapshot(), 0, 4096),
                    NbdTestClient.readData(c.call(0, CMD_READ, 0, 4096, null)));
        }
    }

    private static byte[] header(int type, long cookie, long offset, int length) {
        return ByteBuffer.allocate(28).putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type)
                .putLong(cookie).putLong(offset).putInt(length).array();
    }

    @Test
    void closeLetsRequestsInFlightFinishAndFlushes() throws Exception {
        byte[] init = pattern(65536, 14);
        GatedDevice dev = new GatedDevice(init);
        start(Map.of("", dev), new NbdServer.Options());
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            c.request(0, CMD_READ, 7, 0, 4096, null);
            dev.waiting.await();
            Thread closer = new Thread(server::close);
            closer.start();
            waitFor(() -> !java.nio.file.Files.exists(sock));
            dev.gate.countDown();
            NbdTestClient.Reply r = c.readReply(k -> 4096);
            assertEquals(7, r.cookie());
            assertEquals(0, r.error());
            assertArrayEquals(Arrays.copyOf(init, 4096), r.data());
            closer.join();
            assertTrue(c.serverClosed());
            assertEquals(1, dev.flushes.get(), "close flushes the device");
            assertEquals(0, server.openConnections());
        }
    }

    @Test
    void aClientThatNeverReadsRepliesIsHeldBackAndCutAtClose() throws Exception {
        start(new NbdServer.Options().closeTimeout(java.time.Duration.ofMillis(300)));
        try (NbdTestClient good = NbdTestClient.open(sock, "", false);
             NbdTestClient greedy = NbdTestClient.open(sock, "", false)) {
            for (int i = 0; i < 200; i++) greedy.request(0, CMD_READ, i, 0, 1 << 20, null);
            // The server stops reading the greedy client's requests once its in-flight budget is used.
            byte[] d = pattern(4096, 15);
            assertEquals(0, good.call(0, CMD_WRITE, 0, 4096, d).error());
            assertArrayEquals(d, NbdTestClient.readData(good.call(0, CMD_READ, 0, 4096, null)));
            assertTrue(server.bytesRead() <= 64L << 20, "read " + server.bytesRead() + " bytes for a client that reads nothing");
            server.close(); // must not wait forever on the stuck connection
            assertEquals(0, server.openConnections());
        }
    }

    @Test
    void atTheLimitAConnectionInHandshakeThenTheLongestIdleMakesRoom() throws Exception {
        start(new NbdServer.Options().maxConnections(2));
        try (NbdTestClient older = NbdTestClient.open(sock, "", false);
             NbdTestClient newer = NbdTestClient.open(sock, "", false)) {
            assertEquals(0, newer.call(0, CMD_FLUSH, 0, 0, null).error());
            waitFor(() -> server.openConnections() == 2);
            // Full: the fresh client is served, the one idle the longest is closed for it.
            try (NbdTestClient fresh = NbdTestClient.open(sock, "", false)) {
                assertEquals(0, fresh.call(0, CMD_FLUSH, 0, 0, null).error());
                assertTrue(older.serverClosed(), "the longest idle connection made room");
                assertEquals(0, newer.call(0, CMD_FLUSH, 0, 0, null).error());
            }
            waitFor(() -> server.openConnections() == 1);
            // Full again, with a connection still in its handshake: it goes before the idle one,
            // although the idle one has been idle longer.
            try (NbdTestClient handshaking = NbdTestClient.connect(sock)) {
                handshaking.read(18);   // greeting only
                waitFor(() -> server.openConnections() == 2);
                try (NbdTestClient third = NbdTestClient.open(sock, "", false)) {
                    assertTrue(handshaking.serverClosed(), "the connection in handshake made room");
                    assertEquals(0, third.call(0, CMD_FLUSH, 0, 0, null).error());
                    assertEquals(0, newer.call(0, CMD_FLUSH, 0, 0, null).error());
                }
            }
        }
    }

    @Test
    void atTheLimitABusyConnectionIsKeptAndTheNewcomerTurnedAway() throws Exception {
        GatedDevice dev = new GatedDevice(new byte[65536]);
        start(Map.of("", dev), new NbdServer.Options().maxConnections(1));
        try (NbdTestClient busy = NbdTestClient.open(sock, "", false)) {
            busy.request(0, CMD_READ, 5, 0, 4096, null);
            dev.waiting.await();
            try (NbdTestClient second = NbdTestClient.connect(sock)) {
                assertTrue(second.serverClosed());
            }
            dev.gate.countDown();
            assertEquals(5, busy.readReply(k -> 4096).cookie());
        }
    }

    @Test
    void silentSocketsCannotLockARealClientOut() throws Exception {
        MemoryBlockDevice dev = start(new NbdServer.Options());   // default limit (256) and timeout (10 s)
        List<java.nio.channels.SocketChannel> silent = new ArrayList<>();
        List<NbdTestClient> stalled = new ArrayList<>();
        try {
            for (int i = 0; i < 128; i++) {
                java.nio.channels.SocketChannel c = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX);
                c.connect(java.net.UnixDomainSocketAddress.of(sock));
                silent.add(c);
            }
            // The other half complete the handshake and send the first bytes of a request, then nothing.
            for (int i = 0; i < 128; i++) {
                NbdTestClient c = NbdTestClient.open(sock, "", false);
                stalled.add(c);
                c.write(ByteBuffer.allocate(3).put(new byte[] {0x25, 0x60, (byte) 0x95}).flip());
            }
            waitFor(() -> server.openConnections() == 256);
            try (NbdTestClient real = NbdTestClient.open(sock, "", true)) {
                byte[] d = pattern(4096, 50);
                assertEquals(0, real.call(0, CMD_WRITE, 0, 4096, d).error());
                assertArrayEquals(d, Arrays.copyOf(dev.snapshot(), 4096));
            }
            // Again and again: every newcomer finds room.
            for (int i = 0; i < 200; i++) {
                try (NbdTestClient real = NbdTestClient.open(sock, "", false)) {
                    assertEquals(0, real.call(0, CMD_FLUSH, 0, 0, null).error());
                }
            }
        } finally {
            for (java.nio.channels.SocketChannel c : silent) c.close();
            for (NbdTestClient c : stalled) c.close();
        }
    }

    @Test
    void handshakeAndRequestsHaveADeadlineButIdleConnectionsDoNot() throws Exception {
        start(new NbdServer.Options().clientTimeout(java.time.Duration.ofSeconds(1)));   // 1 s: handshakes on a loaded machine fit
        assertTimeoutPreemptively(java.time.Duration.ofSeconds(10), () -> {
            try (NbdTestClient idle = NbdTestClient.open(sock, "", false)) {
                try (NbdTestClient mute = NbdTestClient.connect(sock)) {
                    mute.read(18);
                    assertTrue(mute.serverClosed(), "no handshake: closed");
                }
                try (NbdTestClient halfOption = NbdTestClient.connect(sock)) {
                    halfOption.greet(FLAG_C_FIXED_NEWSTYLE);
                    halfOption.write(ByteBuffer.allocate(8).putLong(IHAVEOPT).flip());
                    assertTrue(halfOption.serverClosed(), "half an option: closed");
                }
                try (NbdTestClient halfHeader = NbdTestClient.open(sock, "", false)) {
                    halfHeader.write(ByteBuffer.allocate(10).putInt(REQUEST_MAGIC).flip());
                    assertTrue(halfHeader.serverClosed(), "half a request header: closed");
                }
                try (NbdTestClient noPayload = NbdTestClient.open(sock, "", false)) {
                    noPayload.request(0, CMD_WRITE, 1, 0, 65536, new byte[100]);
                    assertTrue(noPayload.serverClosed(), "a write without its payload: closed");
                }
                // Many timeouts later the idle connection still works: idleness has no deadline.
                assertEquals(0, idle.call(0, CMD_FLUSH, 0, 0, null).error());
            }
        });
    }

    @Test
    void aClientThatNeverTakesItsRepliesIsClosedAfterTheTimeout() throws Exception {
        start(new NbdServer.Options().clientTimeout(java.time.Duration.ofSeconds(1)));   // 1 s: handshakes on a loaded machine fit
        try (NbdTestClient good = NbdTestClient.open(sock, "", false);
             NbdTestClient greedy = NbdTestClient.open(sock, "", false)) {
            for (int i = 0; i < 200; i++) greedy.request(0, CMD_READ, i, 0, 1 << 20, null);
            waitFor(() -> server.openConnections() == 1);   // the greedy one is gone, without a close()
            assertEquals(0, server.payloadBytesHeld(), "its replies' memory came back");
            byte[] d = pattern(4096, 51);
            assertEquals(0, good.call(0, CMD_WRITE, 0, 4096, d).error());
            assertArrayEquals(d, NbdTestClient.readData(good.call(0, CMD_READ, 0, 4096, null)));
        }
    }

    @Test
    void aFloodOfLargeWriteHeadersStaysWithinTheMemoryBudget() throws Exception {
        long budget = 64 << 20;
        MemoryBlockDevice dev = new MemoryBlockDevice(64 << 20);
        // 2 s: long enough that a handshake on a loaded 2-core machine is never cut off.
        start(Map.of("", dev), new NbdServer.Options().maxRequestMemory(budget)
                .clientTimeout(java.time.Duration.ofSeconds(2)));
        List<NbdTestClient> flood = new ArrayList<>();
        try {
            for (int i = 0; i < 200; i++) {
                NbdTestClient c = NbdTestClient.open(sock, "", false);
                flood.add(c);
                c.request(0, CMD_WRITE, i, 0, 32 << 20, new byte[1]);   // a 32 MiB write header, 1 byte of it
            }
            // Each either held its share of the budget until its payload deadline, or waited for
            // the budget, got ENOMEM and was closed while draining the payload that never came.
            waitFor(() -> server.openConnections() == 0, 60);
        } finally {
            for (NbdTestClient c : flood) c.close();
        }
        assertTrue(server.peakPayloadBytes() > 0, "some writes got their buffer");
        assertTrue(server.peakPayloadBytes() <= budget, "peak " + server.peakPayloadBytes() + " > budget " + budget);
        assertTrue(server.memoryRefusals() > 0, "requests past the budget were refused");
        assertEquals(0, server.payloadBytesHeld());
        // Healthy afterwards: a normal client, a full-size write and read.
        try (NbdTestClient c = NbdTestClient.open(sock, "", true)) {
            byte[] big = pattern(32 << 20, 52);
            assertEquals(0, c.call(0, CMD_WRITE, 0, big.length, big).error());
            assertArrayEquals(big, NbdTestClient.readData(c.call(0, CMD_READ, 0, big.length, null)));
        }
        assertTrue(server.peakPayloadBytes() <= budget);
    }

    @Test
    void aRequestPastTheBudgetGetsEnomemAndTheStreamStaysInSync() throws Exception {
        GatedDevice dev = new GatedDevice(new byte[4 << 20]);
        start(Map.of("", dev), new NbdServer.Options().blockSizes(512, 4096, 1 << 20).maxInFlightBytes(1 << 20)
                .maxRequestMemory(1 << 20).clientTimeout(java.time.Duration.ofSeconds(1)));
        try (NbdTestClient holder = NbdTestClient.open(sock, "", false);
             NbdTestClient other = NbdTestClient.open(sock, "", true)) {
            holder.request(0, CMD_READ, 1, 0, 1 << 20, null);   // holds the whole budget in the gated device
            dev.waiting.await();
            NbdTestClient.Reply r = other.call(0, CMD_WRITE, 65536, 4096, pattern(4096, 53));
            assertEquals(ENOMEM, r.error());
            assertEquals(ENOMEM, other.call(0, CMD_READ, 65536, 4096, null).error());
            assertEquals(0, other.call(0, CMD_FLUSH, 0, 0, null).error(), "no payload needed: served");
            dev.gate.countDown();
            assertEquals(1, holder.readReply(k -> 1 << 20).cookie());
            byte[] d = pattern(4096, 54);
            assertEquals(0, other.call(0, CMD_WRITE, 65536, 4096, d).error(), "the budget is back");
            assertArrayEquals(d, NbdTestClient.readData(other.call(0, CMD_READ, 65536, 4096, null)));
        }
    }

    @Test
    void largePayloadsKeepTheJdksPerThreadDirectCopiesSmall() throws Exception {
        Path img = dir.resolve("dev.img");
        bow.blockdev.FileBlockDevice.createSparse(img, 64 << 20);
        try (bow.blockdev.FileBlockDevice file = bow.blockdev.FileBlockDevice.open(img, false)) {
            start(Map.of("", file), new NbdServer.Options());
            long before = directBytes();
            List<NbdTestClient> cs = new ArrayList<>();
            try {
                for (int i = 0; i < 4; i++) cs.add(NbdTestClient.open(sock, "", false));
                byte[] big = pattern(32 << 20, 55);
                for (NbdTestClient c : cs) {
                    c.request(0, CMD_WRITE, 1, 0, big.length, big);
                    c.request(0, CMD_WRITE, 2, 32 << 20, big.length, big);
                }
                for (NbdTestClient c : cs) {
                    for (int k = 0; k < 2; k++) assertEquals(0, c.readReply(x -> 0).error());
                }
                for (NbdTestClient c : cs) {
                    assertArrayEquals(big, NbdTestClient.readData(c.call(0, CMD_READ, 32 << 20, big.length, null)));
                }
            } finally {
                for (NbdTestClient c : cs) c.close();
            }
            long grown = directBytes() - before;
            System.out.printf("direct buffer pool grew by %.1f MiB for 8 x 32 MiB writes and 4 x 32 MiB reads%n", grown / 1048576.0);
            // Sliced: at most 1 MiB per thread (about 21 threads here). Unsliced, every socket, worker and
            // writer thread keeps a 32 MiB copy (about 670 MiB here).
            assertTrue(grown <= 40 << 20, "direct buffers grew by " + grown + " bytes");
        }
    }

    private static long directBytes() {
        for (java.lang.management.BufferPoolMXBean b : java.lang.management.ManagementFactory.getPlatformMXBeans(
                java.lang.management.BufferPoolMXBean.class)) {
            if (b.getName().equals("direct")) return b.getMemoryUsed();
        }
        throw new AssertionError("no direct buffer pool");
    }

    @Test
    void serveRunsOneConnectedChannel() throws Exception {
        MemoryBlockDevice dev = new MemoryBlockDevice(65536);
        server = new NbdServer(dev, new NbdServer.Options());
        Path p = dir.resolve("plain.sock");
        try (java.nio.channels.ServerSocketChannel ssc =
                     java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            ssc.bind(java.net.UnixDomainSocketAddress.of(p));
            try (NbdTestClient c = NbdTestClient.connect(p)) {
                java.nio.channels.SocketChannel accepted = ssc.accept();
                Thread t = new Thread(() -> server.serve(accepted));
                t.start();
                c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
                c.go("");
                assertEquals(65536, c.exportSize);
                assertEquals(1, server.openConnections());
                assertEquals(0, c.call(0, CMD_WRITE, 512, 3, new byte[] {1, 2, 3}).error());
                c.request(0, CMD_DISC, 9, 0, 0, null);
                t.join(); // serve returns when its connection ends
                assertEquals(0, server.openConnections());
                assertArrayEquals(new byte[] {1, 2, 3}, Arrays.copyOfRange(dev.snapshot(), 512, 515));
            }
        }
    }

    @Test
    void tcpOnLoopbackOnly() throws Exception {
        start(new NbdServer.Options());
        assertThrows(IllegalArgumentException.class,
                () -> server.listenTcp(new java.net.InetSocketAddress("0.0.0.0", 0)));
        java.net.InetSocketAddress a = server.listenTcp(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0));
        try (java.nio.channels.SocketChannel ch = java.nio.channels.SocketChannel.open(a)) {
            ByteBuffer b = ByteBuffer.allocate(16);
            while (b.hasRemaining()) assertTrue(ch.read(b) >= 0);
            assertEquals(NBDMAGIC, b.getLong(0));
        }
    }

    private static String utf8(ByteBuffer b) {
        byte[] x = new byte[b.remaining()];
        b.get(x);
        return new String(x, StandardCharsets.UTF_8);
    }

    /** Polls a condition that the server reaches asynchronously (no timing assertion: 10 s is a hang guard). */
    private static void waitFor(java.util.function.BooleanSupplier cond) throws InterruptedException {
        waitFor(cond, 10);
    }

    private static void waitFor(java.util.function.BooleanSupplier cond, int seconds) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) fail("condition not reached");
            Thread.sleep(5);
        }
    }
}
