package bow.control;

import bow.blockdev.MemoryBlockDevice;
import bow.bowmode.BowEngine;
import bow.daemon.PathDetailsEngine;
import bow.engine.FakeSnapshotEngine;
import bow.engine.ModeEngine;
import bow.lifecycle.LowSpacePolicy;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.SnapshotCreateRequest;
import bow.proto.SnapshotDeleteRequest;
import bow.proto.SnapshotInfo;
import bow.proto.SnapshotListReply;
import bow.proto.SnapshotListRequest;
import bow.proto.SnapshotRollbackRequest;
import bow.proto.StatusRequest;
import bow.snapshot.PersistentEngine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** The snapshot requests of the control socket, against a fake shared-mode engine and the other modes. */
class SnapshotRequestsTest {
    @TempDir Path dir;
    ControlServer server;

    @AfterEach
    void stop() throws Exception {
        if (server != null) server.close();
    }

    ControlServer serverOf(ModeEngine engine) {
        server = new ControlServer(engine, () -> 0, uid -> true, () -> {});
        return server;
    }

    static Request create(String name, boolean writable) {
        return Request.newBuilder().setSnapshotCreate(SnapshotCreateRequest.newBuilder().setName(name).setWritable(writable)).build();
    }

    static Request list() {
        return Request.newBuilder().setSnapshotList(SnapshotListRequest.getDefaultInstance()).build();
    }

    static Request delete(String which) {
        return Request.newBuilder().setSnapshotDelete(SnapshotDeleteRequest.newBuilder().setSnapshot(which)).build();
    }

    static Request rollback(String which) {
        return Request.newBuilder().setSnapshotRollback(SnapshotRollbackRequest.newBuilder().setSnapshot(which)).build();
    }

    static Request status() {
        return Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build();
    }

    @Test
    void createListDeleteOverTheSocketThroughTheDaemonsWrappers() throws Exception {
        FakeSnapshotEngine fake = new FakeSnapshotEngine(16 * 4096, 1000);
        // As bowd serves it: status details added, then the low-space policy's fence.
        ModeEngine wrapped = new LowSpacePolicy(new PathDetailsEngine(fake, dir.resolve("origin"), dir.resolve("cow")),
                1, LowSpacePolicy.Action.ABORT, null, "origin").guard();
        assertTrue(wrapped.snapshots().isPresent(), "the wrappers pass the snapshots through");
        serverOf(wrapped);
        Path sock = dir.resolve("control.sock");
        server.listen(sock);
        try (ControlClient c = ControlClient.connect(sock)) {
            Response a = c.call(create("", false));
            assertEquals(Response.Code.OK, a.getCode(), a.getMessage());
            assertEquals(0, a.getSnapshotCreated().getId());
            fake.origin().write(0, ByteBuffer.wrap(new byte[4096]).put(0, (byte) 7));
            Response b = c.call(create("before-upgrade", true));
            assertEquals(Response.Code.OK, b.getCode(), b.getMessage());
            assertEquals(1, b.getSnapshotCreated().getId());
            assertTrue(b.getMessage().contains("before-upgrade"), b.getMessage());

            // The new exports are the engine's, live through the wrappers, with the fence on them.
            assertEquals(Set.of("", "snapshot-0", "snapshot-1", "snapshot-before-upgrade"), wrapped.exports().keySet());

            Response l = c.call(list());
            assertEquals(Response.Code.OK, l.getCode());
            SnapshotListReply r = l.getSnapshotList();
            assertEquals(List.of(0, 1), r.getSnapshotsList().stream().map(SnapshotInfo::getId).toList());
            SnapshotInfo s0 = r.getSnapshots(0), s1 = r.getSnapshots(1);
            assertEquals("", s0.getName());
            assertFalse(s0.getWritable());
            assertEquals(1, s0.getChunksAlone(), "snapshot 0 alone holds chunk 0 as it was");
            assertEquals("before-upgrade", s1.getName());
            assertTrue(s1.getWritable());
            assertEquals(0, s1.getChunksAlone() + s1.getChunksShared());
            assertTrue(Math.abs(System.currentTimeMillis() - s1.getCreatedMillis()) < 60_000);
            assertEquals(4096, r.getChunkBytes());
            assertEquals(1000, r.getTotalChunks());
            assertEquals(999, r.getFreeChunks());

            Response d = c.call(delete("before-upgrade"));
            assertEquals(Response.Code.OK, d.getCode(), d.getMessage());
            assertEquals(List.of(0), c.call(list()).getSnapshotList().getSnapshotsList().stream().map(SnapshotInfo::getId).toList());
            assertEquals(Set.of("", "snapshot-0"), wrapped.exports().keySet());
        }
    }

    @Test
    void callerMistakesAreBadRequestsAndTheLimitIsInvalidState() throws Exception {
        FakeSnapshotEngine fake = new FakeSnapshotEngine(4 * 4096, 1000);
        serverOf(fake);
        assertEquals(Response.Code.OK, server.handle(create("a", false)).getCode());
        Response dup = server.handle(create("a", false));
        assertEquals(Response.Code.BAD_REQUEST, dup.getCode());
        assertTrue(dup.getMessage().contains("exists already"), dup.getMessage());
        Response none = server.handle(delete("nope"));
        assertEquals(Response.Code.BAD_REQUEST, none.getCode());
        assertTrue(none.getMessage().contains("nope"), none.getMessage());
        assertEquals(Response.Code.BAD_REQUEST, server.handle(delete("")).getCode());
        assertEquals(Response.Code.BAD_REQUEST, server.handle(rollback("")).getCode());
        assertEquals(Response.Code.BAD_REQUEST, server.handle(rollback("17")).getCode());
        for (int i = 1; i < 64; i++) assertEquals(Response.Code.OK, server.handle(create("", false)).getCode());
        Response full = server.handle(create("", false));
        assertEquals(Response.Code.INVALID_STATE, full.getCode());
        assertTrue(full.getMessage().contains("64"), full.getMessage());
    }

    @Test
    void rollbackStartsAndReportsProgressInStatus() throws Exception {
        FakeSnapshotEngine fake = new FakeSnapshotEngine(8 * 4096, 1000);
        serverOf(fake);
        assertEquals(Response.Code.OK, server.handle(create("old", false)).getCode());
        byte[] changed = new byte[8 * 4096];
        Arrays.fill(changed, (byte) 9);
        fake.origin().write(0, ByteBuffer.wrap(changed));
        fake.holdRollback();
        Response r = server.handle(rollback("old"));
        assertEquals(Response.Code.OK, r.getCode(), r.getMessage());
        assertEquals("ROLLING_BACK", server.handle(status()).getStatus().getState());
        Response again = server.handle(rollback("old"));
        assertEquals(Response.Code.INVALID_STATE, again.getCode(), "one rollback at a time");
        fake.releaseRollback(3);
        waitFor(() -> "3/8 chunks".equals(server.handle(status()).getStatus().getDetailsOrDefault("rollback", "")));
        fake.releaseRollback(5);
        fake.awaitRollback();
        Response st = server.handle(status());
        assertEquals("NO_CHECKPOINT", st.getStatus().getState());
        assertEquals("8/8 chunks", st.getStatus().getDetailsOrThrow("rollback"));
        assertArrayEquals(new byte[8 * 4096], fake.origin().snapshot(), "the origin is the snapshot's content again");
    }

    @Test
    void otherModesAnswerUnsupportedNamingTheirMode() throws Exception {
        BowEngine bow = BowEngine.open(new MemoryBlockDevice(256 * 4096), "mem", 4096);
        serverOf(new PathDetailsEngine(bow, dir.resolve("d"), null));
        for (Request q : List.of(create("x", false), list(), delete("0"), rollback("0"))) {
            Response r = server.handle(q);
            assertEquals(Response.Code.UNSUPPORTED, r.getCode(), q.toString());
            assertEquals("only shared mode has snapshots; this daemon runs bow mode", r.getMessage());
        }
        server.close();
        PersistentEngine p = PersistentEngine.open(new MemoryBlockDevice(64 * 4096), new MemoryBlockDevice(64 * 4096),
                new PersistentEngine.Options(0, false, false));
        serverOf(p);
        Response r = server.handle(list());
        assertEquals(Response.Code.UNSUPPORTED, r.getCode());
        assertTrue(r.getMessage().endsWith("runs persistent mode"), r.getMessage());
    }

    private static void waitFor(java.util.function.BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) fail("condition not reached");
            Thread.sleep(5);
        }
    }
}
