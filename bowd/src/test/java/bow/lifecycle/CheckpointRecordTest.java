package bow.lifecycle;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.HashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class CheckpointRecordTest {
    @TempDir Path dir;

    private static CheckpointRecord sample() {
        return new CheckpointRecord("persistent", "/dev/sdb1", "/dev/sdc1", 3, Instant.parse("2026-11-23T00:00:00.123Z"),
                "OTA 1.2 → 1.3", CheckpointRecord.State.ACTIVE, "", "", 0);
    }

    @Test
    void roundTrip() throws Exception {
        Path f = dir.resolve("checkpoint.rec");
        assertTrue(CheckpointRecord.read(f).isEmpty());
        CheckpointRecord r = sample();
        r.write(f);
        assertEquals(r, CheckpointRecord.read(f).orElseThrow());
        CheckpointRecord r2 = CheckpointRecord.start("bow", "/dev/vdb", null, -1, "").withState(CheckpointRecord.State.ROLLBACK_REQUESTED, "aborted")
                .withLowSpaceAction("abort at 2026-11-23T00:00:00Z: 1000 bytes free < 4096").withRetries(-1, 7);
        r2.write(f);
        assertEquals(r2, CheckpointRecord.read(f).orElseThrow());
        assertTrue(r2.needsRollback());
        CheckpointRecord shared = CheckpointRecord.start("shared", "/dev/vdb", "/dev/vdc", 2, "OTA");
        shared.write(f);
        assertEquals(shared, CheckpointRecord.read(f).orElseThrow());
        r2.write(f);
        assertTrue(CheckpointRecord.remove(f));
        assertFalse(CheckpointRecord.remove(f));
        assertTrue(CheckpointRecord.read(f).isEmpty());
    }

    @Test
    void needsRollbackFromRetriesOrState() {
        CheckpointRecord r = sample();
        assertFalse(r.needsRollback());
        assertTrue(r.withRetries(0, 3).needsRollback());
        assertFalse(r.withRetries(-1, 100).needsRollback());
        assertTrue(r.withRetries(-1, 1).withState(CheckpointRecord.State.ROLLBACK_REQUESTED, "x").needsRollback());
    }

    @Test
    void atomicReplaceKeepsTheOldRecordWhenTheWriterDiesBeforeTheRename() throws Exception {
        Path f = dir.resolve("checkpoint.rec");
        CheckpointRecord old = sample();
        old.write(f);
        CheckpointRecord next = old.withRetries(2, 1);
        IOException boom = assertThrows(IOException.class, () -> next.write(f, () -> {
            // the new content is durable in the temp file, the record is still the old one
            assertEquals(old, CheckpointRecord.read(f).orElseThrow());
            throw new IOException("simulated crash before rename");
        }));
        assertEquals("simulated crash before rename", boom.getMessage());
        assertEquals(old, CheckpointRecord.read(f).orElseThrow());
        try (var s = Files.list(dir)) {
            assertEquals(Set.of(f, CheckpointRecord.lockFile(f)), new HashSet<>(s.toList()), "no temp file left behind (the lock file stays)");
        }
        next.write(f);
        assertEquals(next, CheckpointRecord.read(f).orElseThrow());
    }

    @Test
    void everyTruncationIsAClearError() throws Exception {
        byte[] full = sample().encode();
        Path f = dir.resolve("rec");
        for (int len = 0; len < full.length; len++) {
            byte[] part = java.util.Arrays.copyOf(full, len);
            Files.write(f, part);
            CheckpointRecord.CorruptRecordException e = assertThrows(CheckpointRecord.CorruptRecordException.class,
                    () -> CheckpointRecord.read(f), "length " + len);
            assertTrue(e.getMessage().startsWith("checkpoint record " + f + " is unreadable: "), e.getMessage());
        }
    }

    @Test
    void everyCorruptedByteIsAClearError() throws Exception {
        byte[] full = sample().encode();
        Path f = dir.resolve("rec");
        for (int i = 0; i < full.length; i++) {
            for (int flip : new int[] {0x01, 0x20, 0x80}) {
                byte[] bad = full.clone();
                bad[i] ^= (byte) flip;
                Files.write(f, bad);
                CheckpointRecord.CorruptRecordException e = assertThrows(CheckpointRecord.CorruptRecordException.class,
                        () -> CheckpointRecord.read(f), "byte " + i + " ^ " + flip);
                assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
            }
        }
    }

    @Test
    void aValidChecksumDoesNotExcuseBadContent() throws Exception {
        Path f = dir.resolve("rec");
        String body = CheckpointRecord.MAGIC + " 2\nmode=bow\n";
        Files.write(f, withCrc(body));
        assertTrue(assertThrows(CheckpointRecord.CorruptRecordException.class, () -> CheckpointRecord.read(f))
                .getMessage().contains("unsupported version '2'"));
        String good = new String(sample().encode(), java.nio.charset.StandardCharsets.UTF_8);
        String noCrc = good.substring(0, good.lastIndexOf("crc32="));
        Files.write(f, withCrc(noCrc.replace("retries=3", "retries=-5")));
        assertTrue(assertThrows(CheckpointRecord.CorruptRecordException.class, () -> CheckpointRecord.read(f))
                .getMessage().contains("retries must be"));
        Files.write(f, withCrc(noCrc.replace("state=ACTIVE", "state=MAYBE")));
        assertThrows(CheckpointRecord.CorruptRecordException.class, () -> CheckpointRecord.read(f));
        Files.write(f, withCrc(noCrc.replace("cow=", "cowx=")));
        assertTrue(assertThrows(CheckpointRecord.CorruptRecordException.class, () -> CheckpointRecord.read(f))
                .getMessage().contains("expected key cow"));
    }

    private static byte[] withCrc(String body) {
        java.util.zip.CRC32 c = new java.util.zip.CRC32();
        byte[] b = body.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        c.update(b);
        return (body + String.format("crc32=%08x\n", c.getValue())).getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    @Test
    void refusesValuesThatWouldBreakTheFormat() {
        assertThrows(IllegalArgumentException.class, () -> CheckpointRecord.start("bow", "/dev/x\nstate=ACTIVE", null, 1, ""));
        assertThrows(IllegalArgumentException.class, () -> CheckpointRecord.start("persistent", "/dev/x", null, 1, ""));
        assertThrows(IllegalArgumentException.class, () -> CheckpointRecord.start("shared", "/dev/x", "", 1, ""));
        assertThrows(IllegalArgumentException.class, () -> CheckpointRecord.start("thin", "/dev/x", "/dev/y", 1, ""));
        assertThrows(IllegalArgumentException.class, () -> CheckpointRecord.start("bow", "/dev/x", null, -2, ""));
    }
}
