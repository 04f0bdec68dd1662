package bow.ctl;

import bow.shared.Leaf;
import bow.shared.Leaf.Exc;
import bow.shared.SharedImage;
import bow.shared.SharedTree;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

/** {@code bowctl shared check} and {@code bowctl shared dump} on COW images laid out by {@link SharedImage}. */
@SuppressWarnings("unchecked")
class SharedCommandsTest {
    @TempDir Path dir;

    static Ext4EndToEndTest.Run bowctl(String... args) { return Ext4EndToEndTest.bowctl(args); }

    Path write(SharedImage img, String name) throws Exception {
        Path p = dir.resolve(name);
        Files.write(p, img.image());
        return p;
    }

    /** Three snapshots, origin and snapshot writes over 60 chunks, snapshot 1 half deleted: a tree of several levels. */
    static SharedImage busy(long seed) {
        Random r = new Random(seed);
        SharedImage img = SharedImage.small(1024);
        img.commit();
        img.createSnapshot(0, "first", false, 1_700_000_000_000L);
        img.createSnapshot(1, "second", false, 1_700_000_001_000L);
        for (int i = 0; i < 40; i++) img.originWrite(r.nextInt(60));
        img.commit();
        img.createSnapshot(2, "rw", true, 1_700_000_002_000L);
        for (int i = 0; i < 40; i++) {
            if (r.nextBoolean()) img.originWrite(r.nextInt(60)); else img.snapshotWrite(r.nextInt(60), 2);
        }
        img.commit();
        img.deleteSnapshot(1);
        img.tree.deleteStep(2);
        img.commit();
        return img;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> json(String s) { return (Map<String, Object>) MiniJson.parse(s.trim()); }

    @Test
    void cleanStoreExitsZeroWithItsCounts() throws Exception {
        SharedImage img = busy(1);
        Path cow = write(img, "cow.img");
        byte[] before = Files.readAllBytes(cow);
        SharedTree.CheckResult mem = img.tree.check();

        Ext4EndToEndTest.Run r = bowctl("shared", "check", "--cow", cow.toString());
        assertEquals(ExitCodes.OK, r.code(), r.toString());
        assertTrue(r.out().contains("\nclean\n"), r.out());
        assertTrue(r.out().contains(mem.nodes() + " nodes, " + mem.leaves() + " leaves, " + mem.exceptions() + " exceptions"), r.out());
        assertTrue(r.out().contains("being deleted: 1"), r.out());
        assertTrue(r.out().contains("slot " + img.header().slot() + " in use (sequence " + img.header().sequence() + ")"), r.out());

        Ext4EndToEndTest.Run j = bowctl("shared", "check", "--cow", cow.toString(), "--json");
        assertEquals(ExitCodes.OK, j.code(), j.toString());
        Map<String, Object> o = json(j.out());
        assertEquals(Boolean.TRUE, o.get("clean"));
        Map<String, Object> counts = (Map<String, Object>) o.get("counts");
        assertEquals((long) mem.leaves(), counts.get("leaves"));
        assertEquals((long) mem.nodes(), counts.get("nodes"));
        assertEquals(mem.exceptions(), counts.get("exceptions"));
        assertEquals(img.alloc.freeCount(), counts.get("free_chunks"));
        assertEquals(0L, o.get("problem_count"));
        Map<String, Object> h = (Map<String, Object>) o.get("header");
        assertEquals(List.of(0L, 2L), h.get("live"));
        assertEquals(List.of(1L), h.get("deleting"));
        assertArrayEquals(before, Files.readAllBytes(cow), "check wrote nothing");
    }

    /** Each corruption alone: exit 4 and the problem's chunk named. */
    @Test
    void eachCorruptionIsReportedWithItsChunk() throws Exception {
        Map<String, Consumer<SharedImage>> corruptions = new LinkedHashMap<>();
        long[] where = new long[1];
        corruptions.put("leaf.magic", img -> { where[0] = img.leafChunkFor(30); img.poke(where[0], 0, (byte) 0, (byte) 0); });
        corruptions.put("leaf.crc", img -> { where[0] = img.leafChunkFor(30); img.poke(where[0], img.chunkBytes - 1, (byte) 0x5a); });
        corruptions.put("leaked", img -> { where[0] = img.layout.nrChunks() - 1; img.setBitmapBit(where[0], true); });
        corruptions.put("marked free", img -> {
            long leaf = img.leafChunkFor(20);
            where[0] = Leaf.decode(img.readChunk(leaf), leaf).entries.get(0).excs.get(0).chunk();
            img.setBitmapBit(where[0], false);
        });
        corruptions.put("neither live nor being deleted", img -> {
            where[0] = img.leafChunkFor(40);
            img.rewriteLeaf(where[0], l -> {
                List<Exc> x = l.entries.get(0).excs;
                x.set(0, new Exc(x.get(0).share() | 1L << 5, x.get(0).chunk()));
            });
        });
        corruptions.put("used 2 times", img -> {
            long a = img.leafChunkFor(5), b = img.leafChunkFor(55);
            long shared = Leaf.decode(img.readChunk(a), a).entries.get(0).excs.get(0).chunk();
            where[0] = shared;
            img.rewriteLeaf(b, l -> {
                List<Exc> x = l.entries.get(0).excs;
                x.set(0, new Exc(x.get(0).share(), shared));
            });
        });
        corruptions.put("no valid header slot", img -> { where[0] = 0; img.poke(0, 200, (byte) 1); img.poke(1, 200, (byte) 1); });
        int n = 0;
        for (Map.Entry<String, Consumer<SharedImage>> c : corruptions.entrySet()) {
            SharedImage img = busy(2);
            c.getValue().accept(img);
            Path cow = write(img, "cow" + n++ + ".img");
            Ext4EndToEndTest.Run r = bowctl("shared", "check", "--cow", cow.toString());
            assertEquals(SharedCommand.PROBLEMS, r.code(), c.getKey() + ": " + r);
            assertTrue(r.out().contains("  chunk " + where[0] + ": ") && r.out().contains(c.getKey()), c.getKey() + " at chunk " + where[0] + ": " + r.out());
            assertTrue(r.err().contains("problem"), r.err());

            Ext4EndToEndTest.Run j = bowctl("shared", "check", "--cow", cow.toString(), "--json");
            assertEquals(SharedCommand.PROBLEMS, j.code());
            Map<String, Object> o = json(j.out());
            assertEquals(Boolean.FALSE, o.get("clean"));
            List<Map<String, Object>> ps = (List<Map<String, Object>>) o.get("problems");
            assertTrue(ps.stream().anyMatch(p -> Long.valueOf(where[0]).equals(p.get("chunk")) && ((String) p.get("problem")).contains(c.getKey())),
                    c.getKey() + ": " + ps);
        }
    }

    @Test
    void manyProblemsShowTheFirstAndHowManyMore() throws Exception {
        SharedImage img = busy(3);
        for (long c = 900; c < 1000; c++) img.setBitmapBit(c, true);
        Ext4EndToEndTest.Run r = bowctl("shared", "check", "--cow", write(img, "cow.img").toString());
        assertEquals(SharedCommand.PROBLEMS, r.code());
        assertTrue(r.out().contains("100 problems:"), r.out());
        assertTrue(r.out().contains("  chunk 919: "), r.out());
        assertFalse(r.out().contains("  chunk 920: "), r.out());
        assertTrue(r.out().contains("... and 80 more (--json lists the first 100)"), r.out());
    }

    @Test
    void blankMissingAndTinyCows() throws Exception {
        Path blank = dir.resolve("blank.img");
        Files.write(blank, new byte[1 << 20]);
        Ext4EndToEndTest.Run r = bowctl("shared", "check", "--cow", blank.toString());
        assertEquals(SharedCommand.BLANK, r.code(), r.toString());
        assertTrue(r.err().contains("blank"), r.err());
        Ext4EndToEndTest.Run d = bowctl("shared", "dump", "--cow", blank.toString());
        assertEquals(SharedCommand.BLANK, d.code(), d.toString());

        Ext4EndToEndTest.Run missing = bowctl("shared", "check", "--cow", dir.resolve("nope").toString());
        assertEquals(ExitCodes.FAILURE, missing.code(), missing.toString());
        Path tiny = dir.resolve("tiny.img");
        Files.write(tiny, new byte[100]);
        assertEquals(ExitCodes.FAILURE, bowctl("shared", "check", "--cow", tiny.toString()).code());
        assertEquals(ExitCodes.USAGE, bowctl("shared", "check").code());
        assertEquals(ExitCodes.USAGE, bowctl("shared").code());
    }

    /** A small store whose mappings are known exactly. */
    record Known(SharedImage img, long d1, long d2, long d3, long d4, long d5) {}

    static Known known() {
        SharedImage img = SharedImage.full(8, 256);
        img.commit();
        img.createSnapshot(0, "base", false, 1_700_000_000_000L);
        img.createSnapshot(1, null, true, 1_700_000_060_000L);
        long d1 = img.originWrite(5);
        img.commit();
        img.createSnapshot(2, "later", false, 1_700_000_120_000L);
        long d2 = img.originWrite(5);
        long d3 = img.originWrite(9);
        SharedTree.SnapWrite w4 = img.snapshotWrite(7, 1);
        SharedTree.SnapWrite w5 = img.snapshotWrite(9, 1);
        assertEquals(SharedTree.FROM_ORIGIN, w4.copyFrom());
        assertEquals(d3, w5.copyFrom());
        img.commit();
        return new Known(img, d1, d2, d3, w4.chunk(), w5.chunk());
    }

    @Test
    void dumpPrintsTheSnapshotTableAndEveryMapping() throws Exception {
        Known k = known();
        Path cow = write(k.img(), "cow.img");
        Ext4EndToEndTest.Run r = bowctl("shared", "dump", "--cow", cow.toString());
        assertEquals(ExitCodes.OK, r.code(), r.toString());
        List<String> lines = r.out().lines().toList();
        int m = lines.indexOf("mappings (origin chunk -> {snapshot IDs}:COW chunk ...):");
        assertTrue(m > 0, r.out());
        assertEquals(List.of("5 -> {0,1}:" + k.d1() + " {2}:" + k.d2(), "7 -> {1}:" + k.d4(), "9 -> {0,2}:" + k.d3() + " {1}:" + k.d5(), "3 mappings"),
                lines.subList(m + 1, lines.size()));
        assertTrue(r.out().contains("snapshots: 3\n"), r.out());
        assertTrue(lines.stream().anyMatch(l -> l.matches(" +0 +base +2023-11-14T22:13:20Z +no")), r.out());
        assertTrue(lines.stream().anyMatch(l -> l.matches(" +1 +- +2023-11-14T22:14:20Z +yes")), r.out());
        assertTrue(lines.stream().anyMatch(l -> l.matches(" +2 +later +2023-11-14T22:15:20Z +no")), r.out());
        assertTrue(r.out().contains("chunk size 8 sectors (4096 bytes), 256 chunks"), r.out());

        Ext4EndToEndTest.Run j = bowctl("shared", "dump", "--cow", cow.toString(), "--json");
        assertEquals(ExitCodes.OK, j.code(), j.toString());
        Map<String, Object> o = json(j.out());
        assertNull(o.get("error"));
        List<Map<String, Object>> snaps = (List<Map<String, Object>>) o.get("snapshots");
        assertEquals(3, snaps.size());
        assertEquals(Map.of("id", 1L, "created", "2023-11-14T22:14:20Z", "created_ms", 1_700_000_060_000L, "writable", true),
                without(snaps.get(1), "name"));
        assertNull(snaps.get(1).get("name"));
        assertEquals("later", snaps.get(2).get("name"));
        List<Object> expected = List.of(
                Map.of("origin", 5L, "exceptions", List.of(exc(List.of(0L, 1L), k.d1()), exc(List.of(2L), k.d2()))),
                Map.of("origin", 7L, "exceptions", List.of(exc(List.of(1L), k.d4()))),
                Map.of("origin", 9L, "exceptions", List.of(exc(List.of(0L, 2L), k.d3()), exc(List.of(1L), k.d5()))));
        assertEquals(expected, o.get("mappings"));
        Map<String, Object> h = (Map<String, Object>) o.get("header");
        assertEquals(k.img().header().sequence(), h.get("sequence"));
        assertEquals(256L, h.get("nr_chunks"));
    }

    static Map<String, Object> exc(List<Long> ids, long chunk) { return Map.of("snapshots", ids, "chunk", chunk); }

    static Map<String, Object> without(Map<String, Object> m, String key) {
        Map<String, Object> c = new LinkedHashMap<>(m);
        c.remove(key);
        return c;
    }

    /** A tree of several levels: every mapping once, in origin order, each one what the tree's lookups say. */
    @Test
    void dumpOfADeepTreeAgreesWithLookups() throws Exception {
        SharedImage img = busy(4);
        Path cow = write(img, "cow.img");
        Ext4EndToEndTest.Run j = bowctl("shared", "dump", "--cow", cow.toString(), "--json");
        assertEquals(ExitCodes.OK, j.code(), j.toString());
        List<Map<String, Object>> ms = (List<Map<String, Object>>) json(j.out()).get("mappings");
        long prev = -1;
        long exceptions = 0;
        for (Map<String, Object> m : ms) {
            long origin = (Long) m.get("origin");
            assertTrue(origin > prev, "ascending origin chunks");
            prev = origin;
            for (Map<String, Object> x : (List<Map<String, Object>>) m.get("exceptions")) {
                exceptions++;
                for (Object id : (List<Object>) x.get("snapshots")) {
                    int s = ((Long) id).intValue();
                    if (img.tree.isLive(s)) assertEquals(img.tree.lookup(origin, s), (long) (Long) x.get("chunk"), "origin " + origin + " snapshot " + s);
                }
            }
        }
        assertEquals(img.tree.check().exceptions(), exceptions);
        assertTrue(ms.size() > 20);
    }

    @Test
    void dumpStopsAtAnUnreadableLeafAndStaysValidJson() throws Exception {
        SharedImage img = busy(5);
        long leaf = img.leafChunkFor(30);
        img.poke(leaf, 0, (byte) 0, (byte) 0);
        Path cow = write(img, "cow.img");
        Ext4EndToEndTest.Run j = bowctl("shared", "dump", "--cow", cow.toString(), "--json");
        assertEquals(SharedCommand.PROBLEMS, j.code(), j.toString());
        Map<String, Object> o = json(j.out());
        assertTrue(((String) o.get("error")).contains("chunk " + leaf + ", leaf.magic"), o.get("error").toString());
        List<Map<String, Object>> ms = (List<Map<String, Object>>) o.get("mappings");
        assertTrue(ms.stream().allMatch(m -> (Long) m.get("origin") < 30));
        Ext4EndToEndTest.Run t = bowctl("shared", "dump", "--cow", cow.toString());
        assertEquals(SharedCommand.PROBLEMS, t.code());
        assertTrue(t.err().contains("leaf.magic"), t.err());

        img.poke(0, 200, (byte) 1);
        img.poke(1, 200, (byte) 1);
        Ext4EndToEndTest.Run torn = bowctl("shared", "dump", "--cow", write(img, "torn.img").toString());
        assertEquals(SharedCommand.PROBLEMS, torn.code());
        assertTrue(torn.err().contains("no valid header slot"), torn.err());
    }
}
