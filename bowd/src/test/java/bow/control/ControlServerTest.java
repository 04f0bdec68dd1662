package bow.control;

import bow.blockdev.MemoryBlockDevice;
import bow.bowmode.BowEngine;
import bow.proto.CommitRequest;
import bow.proto.RangesRequest;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.RollbackRequest;
import bow.proto.ShutdownRequest;
import bow.proto.StartCheckpointRequest;
import bow.proto.StatusRequest;
import bow.proto.TrimRequest;
import bow.snapshot.PersistentEngine;
import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

class ControlServerTest {
    @TempDir Path dir;
    ControlServer server;
    final CountDownLatch shutdown = new CountDownLatch(1);

    BowEngine engine() throws Exception {
        return BowEngine.open(new MemoryBlockDevice(256 * 4096), "mem", 4096);
    }

    Path start(BowEngine eng, java.util.function.IntPredicate uids) throws Exception {
        server = new ControlServer(eng, () -> 3, uids, shutdown::countDown);
        Path sock = dir.resolve("run/control.sock");
        server.listen(sock);
        return sock;
    }

    @AfterEach
    void stop() throws Exception {
        if (server != null) server.close();
    }

    static Response call(Path sock, Request r) throws Exception {
        try (ControlClient c = ControlClient.connect(sock)) {
            return c.call(r);
        }
    }

    @Test
    void drivesTheLifecycleAndReportsStatus() throws Exception {
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(sock)), "socket born 0600");

        Response st = call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build());
        assertEquals(Response.Code.OK, st.getCode());
        assertEquals("bow", st.getStatus().getMode());
        assertEquals("0 TRIM", st.getStatus().getState());
        assertEquals(256 * 4096, st.getStatus().getSize());
        assertEquals(3, st.getStatus().getNbdConnections());

        Response early = call(sock, Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build());
        assertEquals(Response.Code.INVALID_STATE, early.getCode());
        assertTrue(early.getMessage().contains("cannot commit"), early.getMessage());

        Response noSpace = call(sock, Request.newBuilder().setStartCheckpoint(StartCheckpointRequest.getDefaultInstance()).build());
        assertEquals(Response.Code.ERROR, noSpace.getCode());
        assertTrue(noSpace.getMessage().contains("trim"), noSpace.getMessage());

        Response bad = call(sock, Request.newBuilder().setTrim(TrimRequest.newBuilder().setOffset(100).setLength(512)).build());
        assertEquals(Response.Code.BAD_REQUEST, bad.getCode());
        assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setTrim(TrimRequest.newBuilder().setOffset(128 * 4096).setLength(128 * 4096)).build()).getCode());
        assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setStartCheckpoint(StartCheckpointRequest.getDefaultInstance()).build()).getCode());

        Response ranges = call(sock, Request.newBuilder().setRanges(RangesRequest.getDefaultInstance()).build());
        List<String> types = ranges.getRanges().getRangesList().stream().map(bow.proto.Range::getType).toList();
        assertEquals(List.of("Sector0", "Unchanged", "Sector0_current", "Free"), types);

        Response rb = call(sock, Request.newBuilder().setRollback(RollbackRequest.getDefaultInstance()).build());
        assertEquals(Response.Code.UNSUPPORTED, rb.getCode());
        assertTrue(rb.getMessage().contains("bowctl rollback"), rb.getMessage());

        assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build()).getCode());
        assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setShutdown(ShutdownRequest.getDefaultInstance()).build()).getCode());
        assertTrue(shutdown.await(5, TimeUnit.SECONDS), "shutdown hook ran");
    }

    @Test
    void malformedInputCostsOnlyThatConnection() throws Exception {
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));
        // A well-behaved client stays connected across the others' garbage.
        try (ControlClient good = ControlClient.connect(sock)) {
            Request status = Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build();
            assertEquals(Response.Code.OK, good.call(status).getCode());

            // Garbage that is not a protobuf message.
            assertEquals(Response.Code.BAD_REQUEST, rawExchange(sock, new byte[] {5, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff}).getCode());
            // An oversized length prefix (64 MiB): refused before anything is allocated.
            assertEquals(Response.Code.BAD_REQUEST, rawExchange(sock, new byte[] {(byte) 0x80, (byte) 0x80, (byte) 0x80, 0x20}).getCode());
            // A length prefix that never ends.
            assertEquals(Response.Code.BAD_REQUEST, rawExchange(sock, new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff}).getCode());
            // An empty request.
            assertEquals(Response.Code.BAD_REQUEST, rawExchange(sock, new byte[] {0}).getCode());
            // A truncated message: the client says 10 bytes, sends 3 and hangs up.
            try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                c.connect(UnixDomainSocketAddress.of(sock));
                c.write(java.nio.ByteBuffer.wrap(new byte[] {10, 1, 2, 3}));
                c.shutdownOutput();
                Response r = Framing.read(Channels.newInputStream(c), Response.parser());
                assertEquals(Response.Code.BAD_REQUEST, r.getCode());
            }
            assertEquals(Response.Code.OK, good.call(status).getCode(), "the good client is still served");
        }
    }

    @Test
    void invalidTransitionsAreInvalidStateWithTheReason() throws Exception {
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));
        Request startReq = Request.newBuilder().setStartCheckpoint(StartCheckpointRequest.getDefaultInstance()).build();
        Request commitReq = Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build();
        try (ControlClient c = ControlClient.connect(sock)) {
            // Several requests on one connection.
            assertEquals(Response.Code.OK, c.call(Request.newBuilder().setTrim(TrimRequest.newBuilder().setOffset(4096).setLength(64 * 4096)).build()).getCode());
            assertEquals(Response.Code.OK, c.call(startReq).getCode());
            Response again = c.call(startReq);
            assertEquals(Response.Code.INVALID_STATE, again.getCode());
            assertEquals("cannot start a checkpoint in state 1 CHECKPOINT: a checkpoint starts from state 0 TRIM only", again.getMessage());
            assertEquals("1 CHECKPOINT", c.call(Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build()).getStatus().getState());
            assertEquals(Response.Code.OK, c.call(commitReq).getCode());
            Response twice = c.call(commitReq);
            assertEquals(Response.Code.INVALID_STATE, twice.getCode());
            assertTrue(twice.getMessage().startsWith("cannot commit in state 2"), twice.getMessage());
            Response restart = c.call(startReq);
            assertEquals(Response.Code.INVALID_STATE, restart.getCode());
            assertTrue(restart.getMessage().startsWith("cannot start a checkpoint in state 2"), restart.getMessage());
            // Out-of-range and unaligned trims are the caller's mistake, not the engine's.
            for (long[] t : new long[][] {{0, 255 * 4096 + 512 * 9}, {-4096, 4096}, {512, 100}}) {
                Response r = c.call(Request.newBuilder().setTrim(TrimRequest.newBuilder().setOffset(t[0]).setLength(t[1])).build());
                assertEquals(Response.Code.BAD_REQUEST, r.getCode(), java.util.Arrays.toString(t));
                assertTrue(r.getMessage().contains("512-byte aligned and inside the " + 256 * 4096 + "-byte device"), r.getMessage());
            }
        }
    }

    @Test
    void persistentModeRollsBackOnlineThroughTheSocket() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(1 << 20), cow = new MemoryBlockDevice(1 << 20);
        byte[] before = new byte[1 << 20];
        new java.util.Random(7).nextBytes(before);
        origin.write(0, java.nio.ByteBuffer.wrap(before.clone()));
        PersistentEngine eng = PersistentEngine.open(origin, cow, PersistentEngine.Options.defaults());
        server = new ControlServer(eng, () -> 0, ControlServer.defaultPolicy(Set.of()), shutdown::countDown);
        Path sock = dir.resolve("control.sock");
        server.listen(sock);
        Request rollback = Request.newBuilder().setRollback(RollbackRequest.getDefaultInstance()).build();

        Response none = call(sock, rollback);
        assertEquals(Response.Code.INVALID_STATE, none.getCode());
        assertEquals("no checkpoint to roll back", none.getMessage());
        assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setStartCheckpoint(StartCheckpointRequest.getDefaultInstance()).build()).getCode());
        Response st = call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build());
        assertEquals("persistent", st.getStatus().getMode());
        assertEquals("CHECKPOINT", st.getStatus().getState());

        // Writes through the origin export after the checkpoint; the rollback undoes them.
        byte[] junk = new byte[300_000];
        java.util.Arrays.fill(junk, (byte) 0x5a);
        eng.exports().get("").write(123_456, java.nio.ByteBuffer.wrap(junk));
        eng.exports().get("").write(900_000, java.nio.ByteBuffer.wrap(junk, 0, 100_000));
        long exceptions = call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build()).getStatus().getLogEntries();
        assertTrue(exceptions >= 300_000 / 16384, "the overwritten chunks were copied to the COW: " + exceptions);
        assertEquals(Response.Code.OK, call(sock, rollback).getCode());
        byte[] after = new byte[1 << 20];
        origin.read(0, java.nio.ByteBuffer.wrap(after));
        assertArrayEquals(before, after, "the origin is back to the checkpoint");
        assertEquals("NO_SNAPSHOT", call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build()).getStatus().getState());
        assertEquals(Response.Code.INVALID_STATE, call(sock, Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build()).getCode());
    }

    @Test
    void aStalledClientDoesNotBlockOthers() throws Exception {
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));
        try (SocketChannel stalled = SocketChannel.open(StandardProtocolFamily.UNIX);
             SocketChannel halfPrefix = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            stalled.connect(UnixDomainSocketAddress.of(sock));
            stalled.write(java.nio.ByteBuffer.wrap(new byte[] {100, 10}));   // 1 of 100 bytes, then silence
            halfPrefix.connect(UnixDomainSocketAddress.of(sock));
            halfPrefix.write(java.nio.ByteBuffer.wrap(new byte[] {(byte) 0x80}));   // half a length prefix
            for (int i = 0; i < 3; i++) {
                assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build()).getCode());
            }
        }
    }

    @Test
    void theSizeLimitIsOneMebibyte() throws Exception {
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));
        // One byte over the limit: refused on the prefix alone (nothing of the body is sent).
        Response over = rawExchange(sock, new byte[] {(byte) 0x81, (byte) 0x80, 0x40});   // varint 1 MiB + 1
        assertEquals(Response.Code.BAD_REQUEST, over.getCode());
        assertTrue(over.getMessage().contains("1048577 bytes exceeds the limit of 1048576"), over.getMessage());
        // Exactly at the limit: a status request padded with an unknown field is served.
        Request padded = Request.newBuilder().setStatus(StatusRequest.getDefaultInstance())
                .setUnknownFields(com.google.protobuf.UnknownFieldSet.newBuilder()
                        .addField(100, com.google.protobuf.UnknownFieldSet.Field.newBuilder()
                                .addLengthDelimited(com.google.protobuf.ByteString.copyFrom(new byte[Framing.MAX_MESSAGE - 2 - 2 - 3])).build())
                        .build())
                .build();
        assertEquals(Framing.MAX_MESSAGE, padded.getSerializedSize());
        Response r = call(sock, padded);
        assertEquals(Response.Code.OK, r.getCode(), r.getMessage());
        assertEquals("0 TRIM", r.getStatus().getState());
    }

    @Test
    void peersWhoseUidIsNotAllowedAreRefused() throws Exception {
        Path sock = start(engine(), uid -> false);
        Response r = call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build());
        assertEquals(Response.Code.NOT_ALLOWED, r.getCode());
        assertTrue(r.getMessage().contains("uid " + bow.blockdev.LinuxNative.getuid()), r.getMessage());
        // The server answers a refused peer at once and hangs up; a client that sends only
        // afterwards gets EPIPE on its write, and must still read the answer.
        try (ControlClient late = ControlClient.connect(sock)) {
            Thread.sleep(300);
            Response lateAnswer = late.call(Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build());
            assertEquals(Response.Code.NOT_ALLOWED, lateAnswer.getCode());
        }
    }

    @Test
    void aRealOtherUserIsRefusedByItsPeerCredentials() throws Exception {
        HostTools.require(HostTools.isRoot(), "root is needed to run a client as another user");
        HostTools.requireTools("setpriv");
        HostTools.require(Files.isExecutable(Path.of("/usr/bin/python3")), "/usr/bin/python3 is needed");
        // Default policy (root, own uid, allow-list), socket dir opened so that the OS lets
        // uid 65534 connect: only the SO_PEERCRED check stands in its way.
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));
        Files.setPosixFilePermissions(sock.getParent(), PosixFilePermissions.fromString("rwxr-xr-x"));
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        Files.setPosixFilePermissions(sock, PosixFilePermissions.fromString("rw-rw-rw-"));
        // A status request is the bytes {len=2, field 1 (status), length 0}.
        String py = "import socket,sys\n"
                + "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                + "try: s.sendall(bytes([2,10,0]))\n"
                + "except BrokenPipeError: pass  # refused peers are answered at once and hung up on\n"
                + "sys.stdout.buffer.write(s.recv(4096))\n";
        HostTools.Result r = HostTools.run(List.of("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "/usr/bin/python3", "-c", py, sock.toString()));
        assertEquals(0, r.code(), r.output());
        assertTrue(r.output().contains("uid 65534 is not allowed"), r.output());
        // The same request from root (this process) is served.
        assertEquals(Response.Code.OK, call(sock, Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build()).getCode());
    }

    private static Request status() {
        return Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build();
    }

    private static SocketChannel connectRaw(Path sock) throws Exception {
        SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX);
        c.connect(UnixDomainSocketAddress.of(sock));
        return c;
    }

    private void waitForClients(int n) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (server.clientCount() != n) {
            if (System.nanoTime() > end) fail("server has " + server.clientCount() + " clients, not " + n);
            Thread.sleep(5);
        }
    }

    @Test
    void silentClientsCannotLockBowctlOut() throws Exception {
        Path sock = start(engine(), ControlServer.defaultPolicy(Set.of()));   // default limit and timeout
        List<SocketChannel> silent = new java.util.ArrayList<>();
        try {
            for (int i = 0; i < ControlServer.MAX_CLIENTS - 1; i++) silent.add(connectRaw(sock));
            SocketChannel lengthOnly = connectRaw(sock);
            silent.add(lengthOnly);
            lengthOnly.write(java.nio.ByteBuffer.wrap(new byte[] {100}));   // a length, no body
            waitForClients(ControlServer.MAX_CLIENTS);
            // Every slot is held by a client that sent no whole request: the oldest makes room.
            for (int i = 0; i < 3; i++) assertEquals(Response.Code.OK, call(sock, status()).getCode());
            assertTrue(server.clientCount() <= ControlServer.MAX_CLIENTS + 1, "cut clients go away: " + server.clientCount());
            // The first silent client was cut: it sees the end of the stream.
            ByteBuffer one = ByteBuffer.allocate(1);
            assertEquals(-1, silent.get(0).read(one));
        } finally {
            for (SocketChannel c : silent) c.close();
        }
    }

    @Test
    void aClientBusyInTheEngineIsNotCutToMakeRoom() throws Exception {
        bow.blockdev.testing.GateDevice dev = new bow.blockdev.testing.GateDevice(new MemoryBlockDevice(256 * 4096));
        BowEngine eng = BowEngine.open(dev, "mem", 4096);
        eng.discard(4096, 128 * 4096);
        eng.startCheckpoint();
        server = new ControlServer(eng, () -> 0, uid -> true, shutdown::countDown, java.time.Duration.ofSeconds(10), 1);
        Path sock = dir.resolve("run/control.sock");
        server.listen(sock);
        bow.blockdev.testing.GateDevice.Gate gate = dev.arm(bow.blockdev.testing.GateDevice.Op.WRITE, (o, l) -> true);
        bow.blockdev.testing.GateDevice.Request busy = bow.blockdev.testing.GateDevice.start("busy", () -> {
            Response r = call(sock, Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build());
            assertEquals(Response.Code.OK, r.getCode(), r.getMessage());
        });
        assertTrue(gate.awaitArrived(java.time.Duration.ofSeconds(10)));
        // The one slot is busy in the engine: a newcomer is turned away, the busy one is kept.
        Response r = call(sock, status());
        assertEquals(Response.Code.ERROR, r.getCode());
        assertEquals("too many control clients", r.getMessage());
        gate.release();
        busy.join(java.time.Duration.ofSeconds(10));
    }

    @Test
    void aRequestMustArriveWithinTheTimeout() throws Exception {
        server = new ControlServer(engine(), () -> 0, uid -> true, shutdown::countDown, java.time.Duration.ofMillis(200), 64);
        Path sock = dir.resolve("run/control.sock");
        server.listen(sock);
        assertTimeoutPreemptively(java.time.Duration.ofSeconds(10), () -> {
            try (SocketChannel lengthOnly = connectRaw(sock); SocketChannel silent = connectRaw(sock)) {
                lengthOnly.write(ByteBuffer.wrap(new byte[] {100, 10}));   // 1 of 100 bytes, then nothing
                Response r = Framing.read(Channels.newInputStream(lengthOnly), Response.parser());
                assertEquals(Response.Code.BAD_REQUEST, r.getCode());
                assertTrue(r.getMessage().contains("no whole request within 200 ms"), r.getMessage());
                assertEquals(-1, Channels.newInputStream(lengthOnly).read());
                assertEquals(-1, silent.read(ByteBuffer.allocate(1)), "a silent client is cut too");
            }
            waitForClients(0);
        });
        assertEquals(Response.Code.OK, call(sock, status()).getCode());
    }

    @Test
    void closeLetsACommitInsideDeviceIoFinishWithoutInterrupting() throws Exception {
        Path img = dir.resolve("dev.img");
        bow.blockdev.FileBlockDevice.createSparse(img, 256 * 4096);
        bow.blockdev.FileBlockDevice file = bow.blockdev.FileBlockDevice.open(img, false);
        try {
            bow.blockdev.testing.GateDevice dev = new bow.blockdev.testing.GateDevice(file);
            BowEngine eng = BowEngine.open(dev, "file", 4096);
            eng.discard(4096, 128 * 4096);
            eng.startCheckpoint();
            eng.write(8192, ByteBuffer.wrap(new byte[4096]));
            Path sock = start(eng, uid -> true);
            bow.blockdev.testing.GateDevice.Gate gate = dev.arm(bow.blockdev.testing.GateDevice.Op.WRITE, (o, l) -> true);
            Response[] answer = new Response[1];
            bow.blockdev.testing.GateDevice.Request commit = bow.blockdev.testing.GateDevice.start("commit",
                    () -> answer[0] = call(sock, Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build()));
            assertTrue(gate.awaitArrived(java.time.Duration.ofSeconds(10)), "commit reached the device");
            bow.blockdev.testing.GateDevice.Request closing = bow.blockdev.testing.GateDevice.start("close", server::close);
            waitFor(() -> !Files.exists(sock));   // close has stopped accepting...
            assertFalse(closing.isDone(), "...and waits for the commit inside device I/O");
            gate.release();
            closing.join(java.time.Duration.ofSeconds(30));
            commit.join(java.time.Duration.ofSeconds(30));
            assertEquals(Response.Code.OK, answer[0].getCode(), answer[0].getMessage());
            assertEquals("2 COMMITTED", eng.status().state());
            // The device's channel was not closed by an interrupt: it still works for everyone.
            file.write(0, ByteBuffer.wrap(new byte[512]));
            file.read(0, ByteBuffer.allocate(512));
            file.flush();
        } finally {
            file.close();
        }
    }

    @Test
    void shutdownIsAnsweredBeforeTheServerCloses() throws Exception {
        for (int i = 0; i < 20; i++) {
            ControlServer[] self = new ControlServer[1];
            // Like the daemon: the shutdown closes this very server at once.
            self[0] = server = new ControlServer(engine(), () -> 0, uid -> true, () -> {
                try {
                    self[0].close();
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            Path sock = dir.resolve("run/control" + i + ".sock");
            server.listen(sock);
            Response r = call(sock, Request.newBuilder().setShutdown(ShutdownRequest.getDefaultInstance()).build());
            assertEquals(Response.Code.OK, r.getCode());
            assertEquals("shutting down", r.getMessage());
            waitFor(() -> !Files.exists(sock));
        }
    }

    private static void waitFor(java.util.function.BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > end) fail("condition not reached");
            Thread.sleep(5);
        }
    }

    private static Response rawExchange(Path sock, byte[] bytes) throws Exception {
        try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            c.connect(UnixDomainSocketAddress.of(sock));
            OutputStream out = Channels.newOutputStream(c);
            out.write(bytes);
            out.flush();
            InputStream in = Channels.newInputStream(c);
            Response r = Framing.read(in, Response.parser());
            assertNotNull(r, "an answer before the server hangs up");
            assertEquals(-1, in.read(), "then the server closes the connection");
            return r;
        }
    }
}
