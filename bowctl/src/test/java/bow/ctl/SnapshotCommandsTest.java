package bow.ctl;

import bow.blockdev.MemoryBlockDevice;
import bow.bowmode.BowEngine;
import bow.daemon.Daemon;
import bow.daemon.DaemonConfig;
import bow.daemon.PathDetailsEngine;
import bow.engine.FakeSnapshotEngine;
import bow.engine.ModeEngine;
import bow.lifecycle.CheckpointRecord;
import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.OffsetDateTime;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The {@code bowctl snapshot} commands against a daemon in this JVM (the real Daemon, control socket
 * and NBD server) whose engine is a fake shared mode ({@link FakeSnapshotEngine}): the real engine
 * is written elsewhere, so these check the CLI, the protocol and the daemon's wiring, not the store.
 */
class SnapshotCommandsTest {
    static final int SIZE = 8 * FakeSnapshotEngine.CHUNK_BYTES;

    @TempDir Path dir;
    Daemon daemon;
    FakeSnapshotEngine fake;

    Path control() { return dir.resolve("control.sock"); }

    Path nbd() { return dir.resolve("nbd.sock"); }

    void start(ModeEngine engine, String exportName) throws Exception {
        ModeEngine wrapped = new PathDetailsEngine(engine, dir.resolve("origin.img"), dir.resolve("cow.img"));
        daemon = Daemon.create(wrapped, new DaemonConfig(engine.mode(), dir.resolve("origin.img"), dir.resolve("cow.img"), 4096, 0,
                false, false, nbd(), null, false, false, control(), Set.of(), exportName));
        daemon.start(null);
    }

    FakeSnapshotEngine startFake() throws Exception {
        fake = new FakeSnapshotEngine(SIZE, 100);
        start(fake, "disk");
        return fake;
    }

    @AfterEach
    void stop() {
        if (daemon != null) daemon.stop();
    }

    OfflineCommandsTest.Run ctl(String... args) {
        String[] a = Arrays.copyOf(args, args.length + 2);
        a[args.length] = "--control";
        a[args.length + 1] = control().toString();
        return OfflineCommandsTest.bowctl(a);
    }

    int snapshotCount() {
        OfflineCommandsTest.Run l = ctl("snapshot", "list");
        assertEquals(0, l.code(), l.err());
        return l.out().split("\n").length - 2;
    }

    @Test
    void createSeveralInOneCall() throws Exception {
        startFake();
        OfflineCommandsTest.Run a = ctl("snapshot", "create", "a", "b", "c");
        assertEquals(0, a.code(), a.err());
        assertEquals("0\n1\n2\n", a.out(), "one ID per line, in the order of the names");
        String list = ctl("snapshot", "list").out();
        for (String row : new String[] {"0 a", "1 b", "2 c"}) assertTrue(list.lines().anyMatch(l -> l.replaceAll("\\s+", " ").startsWith(row)), row + " in\n" + list);

        // Every name is checked before the first is created.
        for (String[] bad : new String[][] {{"d", "d"}, {"d", "12"}, {"d", "no/slash"}}) {
            String[] args = new String[bad.length + 2];
            args[0] = "snapshot";
            args[1] = "create";
            System.arraycopy(bad, 0, args, 2, bad.length);
            OfflineCommandsTest.Run r = ctl(args);
            assertEquals(ExitCodes.USAGE, r.code(), String.join(" ", bad));
            assertTrue(r.err().contains("bad snapshot name"), r.err());
            assertEquals(3, snapshotCount(), "nothing created for " + String.join(" ", bad));
        }

        // A name the daemon refuses (taken) stops the run there; those before it exist.
        OfflineCommandsTest.Run r = ctl("snapshot", "create", "d", "a", "e");
        assertEquals(ExitCodes.USAGE, r.code(), r.err());
        assertEquals("3\n", r.out());
        assertTrue(r.err().contains("created 1 of 3 snapshots (d); stopped at 'a'"), r.err());
        assertEquals(4, snapshotCount());

        // --name counts as the first name; --writable and --json apply to every one, one JSON object per line.
        OfflineCommandsTest.Run j = ctl("snapshot", "create", "--json", "--writable", "--name", "f", "g");
        assertEquals(0, j.code(), j.err());
        List<String> lines = j.out().lines().toList();
        assertEquals(2, lines.size(), j.out());
        @SuppressWarnings("unchecked") Map<String, Object> f = (Map<String, Object>) MiniJson.parse(lines.get(0));
        @SuppressWarnings("unchecked") Map<String, Object> g = (Map<String, Object>) MiniJson.parse(lines.get(1));
        assertEquals(List.of(4L, "f", true), List.of(f.get("id"), f.get("name"), f.get("writable")));
        assertEquals(List.of(5L, "g", true, List.of("snapshot-5", "snapshot-g")), List.of(g.get("id"), g.get("name"), g.get("writable"), g.get("exports")));

        // On the fast path (bin/bowctl without picocli) the same: up to the limit of 64, then exit 7.
        List<String> many = new java.util.ArrayList<>(List.of("snapshot", "create"));
        for (int i = 6; i < FakeSnapshotEngine.MAX_SNAPSHOTS + 2; i++) many.add("n" + i);
        many.add("--control");
        many.add(control().toString());
        java.io.StringWriter out = new java.io.StringWriter(), err = new java.io.StringWriter();
        Integer code = FastPath.tryRun(many.toArray(new String[0]), new java.io.PrintWriter(out, true), new java.io.PrintWriter(err, true));
        assertEquals(ExitCodes.INVALID_STATE, code, err.toString());
        assertEquals(FakeSnapshotEngine.MAX_SNAPSHOTS - 6, out.toString().lines().count(), "IDs 6..63 printed");
        assertTrue(err.toString().contains("created 58 of 60 snapshots"), err.toString());
        assertEquals(FakeSnapshotEngine.MAX_SNAPSHOTS, snapshotCount());
    }

    @Test
    void createListDelete() throws Exception {
        startFake();
        OfflineCommandsTest.Run a = ctl("snapshot", "create");
        assertEquals(0, a.code(), a.err());
        assertEquals("0\n", a.out(), "the bare ID, for scripts");
        fake.origin().write(0, ByteBuffer.wrap(new byte[4096]).put(0, (byte) 1));
        OfflineCommandsTest.Run b = ctl("snapshot", "create", "--name", "pre-upgrade", "--writable", "--json");
        assertEquals(0, b.code(), b.err());
        @SuppressWarnings("unchecked") Map<String, Object> created = (Map<String, Object>) MiniJson.parse(b.out().trim());
        assertEquals(1L, created.get("id"));
        assertEquals("pre-upgrade", created.get("name"));
        assertEquals(true, created.get("writable"));
        assertEquals(List.of("snapshot-1", "snapshot-pre-upgrade"), created.get("exports"));

        OfflineCommandsTest.Run l = ctl("snapshot", "list");
        assertEquals(0, l.code(), l.err());
        String[] lines = l.out().split("\n");
        assertEquals(4, lines.length, l.out());
        assertEquals(List.of("ID", "NAME", "CREATED", "WRITABLE", "ALONE", "SHARED"), List.of(lines[0].trim().split("\\s+")));
        String[] row0 = lines[1].trim().split("\\s+"), row1 = lines[2].trim().split("\\s+");
        assertEquals(List.of("0", "-"), List.of(row0[0], row0[1]));
        OffsetDateTime when = OffsetDateTime.parse(row0[2]);   // ISO-8601 with the local offset
        assertTrue(Math.abs(when.toInstant().toEpochMilli() - System.currentTimeMillis()) < 120_000, row0[2]);
        assertEquals(List.of("no", "1", "0"), List.of(row0[3], row0[4], row0[5]), "snapshot 0 alone holds the chunk the origin changed");
        assertEquals(List.of("1", "pre-upgrade", "yes", "0", "0"), List.of(row1[0], row1[1], row1[3], row1[4], row1[5]));
        assertEquals("2 snapshots; COW: 99 of 100 chunks free (396.0 KiB of 400.0 KiB; chunk 4096 bytes)", lines[3]);

        OfflineCommandsTest.Run j = ctl("snapshot", "list", "--json");
        assertEquals(0, j.code(), j.err());
        @SuppressWarnings("unchecked") Map<String, Object> list = (Map<String, Object>) MiniJson.parse(j.out().trim());
        assertEquals(4096L, list.get("chunk_bytes"));
        assertEquals(99L, list.get("free_chunks"));
        assertEquals(100L, list.get("total_chunks"));
        @SuppressWarnings("unchecked") List<Map<String, Object>> snaps = (List<Map<String, Object>>) list.get("snapshots");
        assertEquals(2, snaps.size());
        assertNull(snaps.get(0).get("name"));
        assertEquals(1L, snaps.get(0).get("chunks_alone"));
        assertEquals("pre-upgrade", snaps.get(1).get("name"));
        assertEquals(true, snaps.get(1).get("writable"));
        assertEquals(row0[2], snaps.get(0).get("created"));

        OfflineCommandsTest.Run d = ctl("snapshot", "delete", "pre-upgrade");
        assertEquals(0, d.code(), d.err());
        assertEquals("snapshot pre-upgrade deleted\n", d.out());
        assertEquals(0, ctl("snapshot", "delete", "0").code());
        l = ctl("snapshot", "list");
        assertEquals("0 snapshots; COW: 100 of 100 chunks free (400.0 KiB of 400.0 KiB; chunk 4096 bytes)", l.out().split("\n")[1]);
    }

    @Test
    void mistakesAndLimitsHaveTheirExitCodes() throws Exception {
        startFake();
        OfflineCommandsTest.Run digits = ctl("snapshot", "create", "--name", "123");
        assertEquals(ExitCodes.USAGE, digits.code());
        assertTrue(digits.err().contains("bad snapshot name '123': all digits"), digits.err());
        assertEquals(0, ctl("snapshot", "create", "--name", "a").code());
        OfflineCommandsTest.Run dup = ctl("snapshot", "create", "--name", "a");
        assertEquals(ExitCodes.USAGE, dup.code(), "a taken name is the caller's mistake");
        assertTrue(dup.err().contains("exists already"), dup.err());
        OfflineCommandsTest.Run none = ctl("snapshot", "delete", "nope");
        assertEquals(ExitCodes.USAGE, none.code());
        assertTrue(none.err().contains("no snapshot named 'nope'"), none.err());
        assertEquals(ExitCodes.USAGE, ctl("snapshot", "rollback", "42").code());
        assertEquals(ExitCodes.USAGE, ctl("snapshot", "delete").code(), "ID|NAME is required");
        for (int i = 1; i < 64; i++) fake.createSnapshot(null, false);
        OfflineCommandsTest.Run full = ctl("snapshot", "create");
        assertEquals(ExitCodes.INVALID_STATE, full.code());
        assertTrue(full.err().contains("invalid state: 64 snapshots"), full.err());
        daemon.stop();
        daemon = null;
        OfflineCommandsTest.Run gone = ctl("snapshot", "list");
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, gone.code(), gone.err());
    }

    @Test
    void otherModesSayTheyHaveNoSnapshots() throws Exception {
        start(BowEngine.open(new MemoryBlockDevice(256 * 4096), "mem", 4096), null);
        for (String[] cmd : List.of(new String[] {"snapshot", "create"}, new String[] {"snapshot", "list"},
                new String[] {"snapshot", "delete", "0"}, new String[] {"snapshot", "rollback", "0", "--wait"})) {
            OfflineCommandsTest.Run r = ctl(cmd);
            assertEquals(ExitCodes.FAILURE, r.code(), String.join(" ", cmd));
            assertEquals("bowctl: not supported: only shared mode has snapshots; this daemon runs bow mode\n", r.err());
        }
    }

    @Test
    void rollbackStartsAndWaitShowsTheEnd() throws Exception {
        startFake();
        assertEquals(0, ctl("snapshot", "create", "--name", "clean").code());
        byte[] dirty = new byte[SIZE];
        Arrays.fill(dirty, (byte) 5);
        fake.origin().write(0, ByteBuffer.wrap(dirty));

        // Without --wait: returns once started; status shows it; a second one is refused.
        fake.holdRollback();
        OfflineCommandsTest.Run r = ctl("snapshot", "rollback", "clean");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("started"), r.out());
        OfflineCommandsTest.Run st = ctl("status");
        assertTrue(st.out().contains("ROLLING_BACK"), st.out());
        assertTrue(st.out().matches("(?s).*rollback\\s+0/8 chunks.*"), st.out());
        assertEquals(ExitCodes.INVALID_STATE, ctl("snapshot", "rollback", "clean").code());
        fake.releaseRollback(8);
        fake.awaitRollback();
        assertArrayEquals(new byte[SIZE], fake.origin().snapshot());

        // With --wait: returns when done.
        fake.origin().write(0, ByteBuffer.wrap(dirty));
        fake.holdRollback();
        CompletableFuture<OfflineCommandsTest.Run> waiting = CompletableFuture.supplyAsync(() -> ctl("snapshot", "rollback", "0", "--wait"));
        Thread.sleep(300);
        assertFalse(waiting.isDone(), "--wait waits for the end");
        fake.releaseRollback(8);
        OfflineCommandsTest.Run w = waiting.get(30, TimeUnit.SECONDS);
        assertEquals(0, w.code(), w.err());
        assertTrue(w.out().endsWith("rolled back to snapshot 0 (8 chunks)\n"), w.out());
        assertArrayEquals(new byte[SIZE], fake.origin().snapshot());

        // A rollback that fails: --wait says where and why, exit 1.
        fake.origin().write(0, ByteBuffer.wrap(dirty));
        fake.failRollbackAt(3);
        fake.holdRollback();
        waiting = CompletableFuture.supplyAsync(() -> ctl("snapshot", "rollback", "clean", "--wait"));
        fake.releaseRollback(8);
        OfflineCommandsTest.Run f = waiting.get(30, TimeUnit.SECONDS);
        assertEquals(ExitCodes.FAILURE, f.code(), f.out());
        assertEquals("bowctl: the rollback to snapshot clean failed after 3 of 8 chunks: rollback failed: injected failure at chunk 3\n", f.err());
    }

    @Test
    void snapshotExportsComeAndGoOverNbd() throws Exception {
        HostTools.require(Files.isExecutable(Path.of(LibnbdScript.PYTHON))
                && HostTools.run(List.of(LibnbdScript.PYTHON, "-c", "import nbd")).code() == 0, "python3-libnbd is needed");
        startFake();
        byte[] first = new byte[SIZE];
        Arrays.fill(first, (byte) 7);
        fake.origin().write(0, ByteBuffer.wrap(first));
        assertEquals(0, ctl("snapshot", "create", "--name", "seven").code());
        assertEquals(0, ctl("snapshot", "create", "--name", "scratch", "--writable").code());
        // The origin changes after the snapshots: they keep the old content.
        fake.origin().write(0, ByteBuffer.wrap(new byte[SIZE]));
        String script = String.join("\n",
                "import nbd, sys",
                "sock = sys.argv[1]",
                "def names():",
                "    h = nbd.NBD(); h.set_opt_mode(True); h.connect_uri('nbd+unix:///?socket=' + sock)",
                "    out = []",
                "    h.opt_list(lambda n, d: out.append(n) or 0)",
                "    h.opt_abort()",
                "    return sorted(out)",
                "def open_(name):",
                "    h = nbd.NBD(); h.set_export_name(name); h.connect_unix(sock); return h",
                "print('names', names())",
                "for e in ['', 'disk', 'snapshot-0', 'snapshot-seven', 'snapshot-1', 'snapshot-scratch']:",
                "    h = open_(e)",
                "    print('export', repr(e), h.get_size(), h.is_read_only(), h.pread(512, 0)[0])",
                "h = open_('snapshot-scratch'); h.pwrite(b'\\x09' * 512, 0); h.flush(); h.shutdown()",
                "print('written')",
                "sys.stdout.flush()",
                "sys.stdin.readline()",   // the test deletes a snapshot meanwhile
                "print('names', names())",
                "try:",
                "    open_('snapshot-seven'); print('still there')",
                "except nbd.Error as ex:",
                "    print('gone')",
                "");
        Path py = dir.resolve("exports.py");
        Files.writeString(py, script);
        Process p = new ProcessBuilder(LibnbdScript.PYTHON, py.toString(), nbd().toString()).redirectErrorStream(true).start();
        try {
            java.io.BufferedReader out = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()));
            StringBuilder seen = new StringBuilder();
            String line;
            while ((line = out.readLine()) != null) {
                seen.append(line).append('\n');
                if (line.equals("written")) break;
            }
            assertEquals(String.join("\n",
                    "names ['', 'disk', 'snapshot-0', 'snapshot-1', 'snapshot-scratch', 'snapshot-seven']",
                    "export '' 32768 False 0",
                    "export 'disk' 32768 False 0",
                    "export 'snapshot-0' 32768 True 7",
                    "export 'snapshot-seven' 32768 True 7",
                    "export 'snapshot-1' 32768 False 7",
                    "export 'snapshot-scratch' 32768 False 7",
                    "written", ""), seen.toString());
            assertEquals(9, fake.snapshotDevice(1).content()[0], "the write reached the writable snapshot");
            assertEquals(0, ctl("snapshot", "delete", "seven").code());
            p.getOutputStream().write('\n');
            p.getOutputStream().flush();
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            String rest = new String(p.getInputStream().readAllBytes());
            assertEquals("names ['', 'disk', 'snapshot-1', 'snapshot-scratch']\ngone\n", rest);
            assertEquals(0, p.exitValue());
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void aSnapshotsExportNameCannotBeTheAlias() throws Exception {
        fake = new FakeSnapshotEngine(SIZE, 100);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> start(fake, "snapshot-x"));
        assertTrue(e.getMessage().contains("'snapshot-' are the snapshots' exports"), e.getMessage());
    }

    @Test
    void commitWithNoCheckpointRunningRemovesALeftoverRecord() throws Exception {
        startFake();
        Path rec = dir.resolve("checkpoint.rec");
        CheckpointRecord.start("persistent", dir.resolve("origin.img").toString(), dir.resolve("cow.img").toString(), 1, "test").write(rec);
        assertEquals("NO_CHECKPOINT", fake.status().state());
        OfflineCommandsTest.Run c = ctl("commit", "--record", rec.toString());
        assertEquals(0, c.code(), c.err());
        assertTrue(c.out().contains("the record is left over"), c.out());
        assertFalse(Files.exists(rec));
    }
}
