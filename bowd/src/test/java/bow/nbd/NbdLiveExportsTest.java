package bow.nbd;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

import static bow.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

/** Exports that change while the server runs (shared mode's snapshots): resolved at each handshake. */
class NbdLiveExportsTest {
    @TempDir Path dir;
    private NbdServer server;
    private Path sock;
    private final Map<String, BlockDevice> exports = new ConcurrentHashMap<>();
    private final Set<String> readOnly = ConcurrentHashMap.newKeySet();

    @AfterEach
    void tearDown() {
        if (server != null) server.close();
    }

    private void start(NbdServer.Options options) throws IOException {
        server = new NbdServer(() -> Map.copyOf(exports), () -> Set.copyOf(readOnly), options);
        sock = dir.resolve("nbd.sock");
        server.listenUnix(sock);
    }

    private static byte[] filled(int n, int value) {
        byte[] b = new byte[n];
        java.util.Arrays.fill(b, (byte) value);
        return b;
    }

    private List<String> list() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_LIST, new byte[0]);
            List<String> names = new ArrayList<>();
            for (NbdTestClient.OptionReply r : c.readOptionReplies()) {
                if (r.type() != REP_SERVER) continue;
                ByteBuffer b = r.buf();
                byte[] n = new byte[b.getInt()];
                b.get(n);
                names.add(new String(n, StandardCharsets.UTF_8));
            }
            return names;
        }
    }

    private int goReply(String name) throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_GO, NbdTestClient.infoRequest(name));
            return c.readOptionReplies().get(0).type();
        }
    }

    @Test
    void anExportAddedAfterStartIsServedAndOneRemovedIsGone() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(filled(8192, 1));
        exports.put("", origin);
        start(new NbdServer.Options().describeOthers(n -> "view " + n));
        assertEquals(List.of(""), list());
        assertEquals(REP_ERR_UNKNOWN, goReply("snapshot-0"));

        // A snapshot appears: a new handshake finds it, read-only as the source says.
        MemoryBlockDevice snap = new MemoryBlockDevice(filled(4096, 2));
        exports.put("snapshot-0", snap);
        exports.put("snapshot-old", snap);
        readOnly.add("snapshot-0");
        readOnly.add("snapshot-old");
        assertEquals(List.of("", "snapshot-0", "snapshot-old"), list());
        NbdTestClient held = NbdTestClient.open(sock, "snapshot-old", false);
        try (NbdTestClient c = NbdTestClient.open(sock, "snapshot-0", false)) {
            assertEquals(4096, c.exportSize);
            assertTrue((c.transmissionFlags & TF_READ_ONLY) != 0);
            assertArrayEquals(filled(4096, 2), NbdTestClient.readData(c.call(0, CMD_READ, 0, 4096, null)));
            assertEquals(EPERM, c.call(0, CMD_WRITE, 0, 512, new byte[512]).error());
        }
        // INFO describes it with the fallback description.
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_INFO, NbdTestClient.infoRequest("snapshot-0", INFO_DESCRIPTION));
            String description = null;
            for (NbdTestClient.OptionReply r : c.readOptionReplies()) {
                ByteBuffer b = r.buf();
                if (r.type() == REP_INFO && b.getShort() == INFO_DESCRIPTION) {
                    byte[] d = new byte[b.remaining()];
                    b.get(d);
                    description = new String(d, StandardCharsets.UTF_8);
                }
            }
            assertEquals("view snapshot-0", description);
        }

        // A writable one: no read-only flag, writes reach its device.
        MemoryBlockDevice rw = new MemoryBlockDevice(4096);
        exports.put("snapshot-1", rw);
        try (NbdTestClient c = NbdTestClient.open(sock, "snapshot-1", false)) {
            assertEquals(0, c.transmissionFlags & TF_READ_ONLY);
            assertEquals(0, c.call(0, CMD_WRITE, 0, 4096, filled(4096, 3)).error());
        }
        assertArrayEquals(filled(4096, 3), rw.snapshot());

        // Deleted: new handshakes no longer find it, by GO or by EXPORT_NAME.
        exports.remove("snapshot-0");
        exports.remove("snapshot-old");
        assertEquals(List.of("", "snapshot-1"), list());
        assertEquals(REP_ERR_UNKNOWN, goReply("snapshot-0"));
        try (NbdTestClient c = NbdTestClient.connect(sock)) {
            c.greet(FLAG_C_FIXED_NEWSTYLE);
            c.sendOption(OPT_EXPORT_NAME, "snapshot-old".getBytes(StandardCharsets.UTF_8));
            assertTrue(c.serverClosed());
        }
        // A connection made before keeps its device (the engine decides what it answers).
        assertArrayEquals(filled(4096, 2), NbdTestClient.readData(held.call(0, CMD_READ, 0, 4096, null)));
        held.close();
        // The default export is unaffected throughout.
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            assertArrayEquals(filled(8192, 1), NbdTestClient.readData(c.call(0, CMD_READ, 0, 8192, null)));
        }
    }

    @Test
    void closeFlushesTheExportsOfThatMomentOncePerDevice() throws Exception {
        AtomicInteger originFlushes = new AtomicInteger(), goneFlushes = new AtomicInteger(), snapFlushes = new AtomicInteger();
        BlockDevice origin = counting(originFlushes);
        BlockDevice gone = counting(goneFlushes);
        BlockDevice snap = counting(snapFlushes);
        exports.put("", origin);
        exports.put("snapshot-0", gone);
        start(new NbdServer.Options());
        exports.remove("snapshot-0");
        exports.put("snapshot-1", snap);
        exports.put("snapshot-new", snap);
        server.close();
        assertEquals(1, originFlushes.get());
        assertEquals(0, goneFlushes.get(), "a deleted snapshot's device is not flushed");
        assertEquals(1, snapFlushes.get(), "one flush for a device under two names");
    }

    @Test
    void aFailingSourceRefusesTheHandshakeAndTheServerLives() throws Exception {
        exports.put("", new MemoryBlockDevice(4096));
        java.util.concurrent.atomic.AtomicBoolean failNext = new java.util.concurrent.atomic.AtomicBoolean();
        server = new NbdServer(() -> {
            if (failNext.getAndSet(false)) throw new IllegalStateException("engine busy");
            return Map.copyOf(exports);
        }, Set::of, new NbdServer.Options());
        sock = dir.resolve("nbd.sock");
        server.listenUnix(sock);
        failNext.set(true);
        assertEquals(REP_ERR_UNKNOWN, goReply(""));
        try (NbdTestClient c = NbdTestClient.open(sock, "", false)) {
            assertEquals(4096, c.exportSize);
        }
    }

    @Test
    void aLiveSourceWithNothingIsRefusedAtConstruction() {
        assertThrows(IllegalArgumentException.class, () -> new NbdServer(Map::of, Set::of, new NbdServer.Options()));
    }

    private static BlockDevice counting(AtomicInteger flushes) {
        return new ForwardingDevice(new MemoryBlockDevice(4096)) {
            @Override public void flush() throws IOException {
                flushes.incrementAndGet();
                super.flush();
            }
        };
    }
}
