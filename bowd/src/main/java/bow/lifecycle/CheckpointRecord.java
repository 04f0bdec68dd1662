package bow.lifecycle;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.zip.CRC32;

/**
 * What the system knows about a running checkpoint across reboots: which device (and mode, COW),
 * how many boots may still try the update, when and why it started, whether a rollback was asked
 * for, and what the low-space policy did. It lives on a metadata path outside the checkpointed
 * device ({@code /var/lib/bow/checkpoint.rec} by default) so that recovery can roll back with no
 * daemon and no arguments.
 *
 * <p>Format (UTF-8 text, version 1): the line {@code bow-checkpoint-record 1}, then exactly the
 * keys of {@link #KEYS} as {@code key=value} lines in that order, then {@code crc32=XXXXXXXX}
 * (CRC-32 of every byte before that line, 8 lowercase hex digits) and a final newline. Any
 * deviation — truncation, a flipped byte, a missing or unknown key — is an error naming the file,
 * never a default: a record that cannot be trusted must not decide whether a device is rolled back.
 *
 * <p>Writes are atomic: a temporary file in the same directory is written and fsynced, renamed
 * over the record (ATOMIC_MOVE), and the directory is fsynced, so after a crash the path holds
 * either the old record or the new one.
 */
public record CheckpointRecord(String mode, String device, String cow, int retries, Instant startedAt,
                               String reason, State state, String stateReason, String lowSpaceAction,
                               int bootAttempts) {

    /**
     * ACTIVE: the checkpoint runs. ROLLBACK_REQUESTED: the next boot (or recovery) must roll back.
     * COMMIT_REQUESTED: a commit was decided and may have begun writing (written before the commit
     * touches the device); if the record is still there, the commit was interrupted and the next
     * {@code bowctl commit --device}, boot or recovery finishes it.
     */
    public enum State { ACTIVE, ROLLBACK_REQUESTED, COMMIT_REQUESTED }

    public static final String MAGIC = "bow-checkpoint-record";
    public static final int VERSION = 1;
    public static final Path DEFAULT_PATH = Path.of("/var/lib/bow/checkpoint.rec");
    static final List<String> KEYS = List.of("mode", "device", "cow", "retries", "boot_attempts", "started_at",
            "reason", "state", "state_reason", "low_space_action");

    /** A record that exists but cannot be read as one. */
    public static final class CorruptRecordException extends IOException {
        public CorruptRecordException(Path file, String what) {
            super("checkpoint record " + file + " is unreadable: " + what
                    + " (check the device by hand; remove the file only if no checkpoint is running)");
        }
    }

    public CheckpointRecord {
        if (!"bow".equals(mode) && !"persistent".equals(mode) && !"shared".equals(mode)) {
            throw new IllegalArgumentException("mode must be bow, persistent or shared, got " + mode);
        }
        if (device == null || device.isEmpty()) throw new IllegalArgumentException("the record needs a device");
        if (!"bow".equals(mode) && (cow == null || cow.isEmpty())) throw new IllegalArgumentException(mode + " mode needs a COW path");
        if (cow == null) cow = "";
        if (retries < -1) throw new IllegalArgumentException("retries must be -1 (never roll back on boot count) or >= 0, got " + retries);
        if (bootAttempts < 0) throw new IllegalArgumentException("boot attempts must be >= 0");
        if (reason == null) reason = "";
        if (stateReason == null) stateReason = "";
        if (lowSpaceAction == null) lowSpaceAction = "";
        for (String v : new String[] {mode, device, cow, reason, stateReason, lowSpaceAction}) {
            for (int i = 0; i < v.length(); i++) {
                if (Character.isISOControl(v.charAt(i))) throw new IllegalArgumentException("record values cannot hold control characters: " + v);
            }
        }
        java.util.Objects.requireNonNull(startedAt);
        java.util.Objects.requireNonNull(state);
    }

    public static CheckpointRecord start(String mode, String device, String cow, int retries, String reason) {
        return new CheckpointRecord(mode, device, cow, retries, Instant.now(), reason, State.ACTIVE, "", "", 0);
    }

    /** Rollback is needed: it was asked for, or every allowed boot has been used. */
    public boolean needsRollback() {
        if (state == State.COMMIT_REQUESTED) return false;   // decided: it is finished, never rolled back
        return state == State.ROLLBACK_REQUESTED || retries == 0;
    }

    public CheckpointRecord withRetries(int r, int attempts) {
        return new CheckpointRecord(mode, device, cow, r, startedAt, reason, state, stateReason, lowSpaceAction, attempts);
    }

    public CheckpointRecord withState(State s, String why) {
        return new CheckpointRecord(mode, device, cow, retries, startedAt, reason, s, why, lowSpaceAction, bootAttempts);
    }

    public CheckpointRecord withLowSpaceAction(String what) {
        return new CheckpointRecord(mode, device, cow, retries, startedAt, reason, state, stateReason, what, bootAttempts);
    }

    /** The record path: the given one, else $BOW_RECORD, else the default. */
    public static Path resolve(Path given) {
        if (given != null) return given;
        String env = System.getenv("BOW_RECORD");
        return env == null || env.isEmpty() ? DEFAULT_PATH : Path.of(env);
    }

    public byte[] encode() {
        StringBuilder b = new StringBuilder();
        b.append(MAGIC).append(' ').append(VERSION).append('\n');
        Map<String, String> kv = values();
        for (String k : KEYS) b.append(k).append('=').append(kv.get(k)).append('\n');
        byte[] body = b.toString().getBytes(StandardCharsets.UTF_8);
        CRC32 crc = new CRC32();
        crc.update(body);
        byte[] tail = String.format("crc32=%08x\n", crc.getValue()).getBytes(StandardCharsets.US_ASCII);
        byte[] all = new byte[body.length + tail.length];
        System.arraycopy(body, 0, all, 0, body.length);
        System.arraycopy(tail, 0, all, body.length, tail.length);
        return all;
    }

    private Map<String, String> values() {
        Map<String, String> kv = new LinkedHashMap<>();
        kv.put("mode", mode);
        kv.put("device", device);
        kv.put("cow", cow);
        kv.put("retries", Integer.toString(retries));
        kv.put("boot_attempts", Integer.toString(bootAttempts));
        kv.put("started_at", startedAt.toString());
        kv.put("reason", reason);
        kv.put("state", state.name());
        kv.put("state_reason", stateReason);
        kv.put("low_space_action", lowSpaceAction);
        return kv;
    }

    /** Parses a whole record file's bytes; {@code file} only names it in errors. */
    public static CheckpointRecord decode(byte[] data, Path file) throws CorruptRecordException {
        if (data.length == 0) throw new CorruptRecordException(file, "the file is empty");
        if (data[data.length - 1] != '\n') throw new CorruptRecordException(file, "truncated (no final newline)");
        int lastStart = data.length - 1;
        while (lastStart > 0 && data[lastStart - 1] != '\n') lastStart--;
        String last = new String(data, lastStart, data.length - 1 - lastStart, StandardCharsets.US_ASCII);
        if (!last.matches("crc32=[0-9a-f]{8}")) throw new CorruptRecordException(file, "truncated or damaged: the last line is not crc32=XXXXXXXX");
        CRC32 crc = new CRC32();
        crc.update(data, 0, lastStart);
        long want = Long.parseLong(last.substring(6), 16);
        if (crc.getValue() != want) {
            throw new CorruptRecordException(file, String.format("checksum mismatch (stored %08x, computed %08x)", want, crc.getValue()));
        }
        String body = new String(data, 0, lastStart, StandardCharsets.UTF_8);
        String[] lines = body.split("\n", -1);   // ends with "" after the final newline
        if (!lines[0].startsWith(MAGIC + " ")) throw new CorruptRecordException(file, "not a bow checkpoint record (first line " + quote(lines[0]) + ")");
        if (!lines[0].equals(MAGIC + " " + VERSION)) throw new CorruptRecordException(file, "unsupported version " + quote(lines[0].substring(MAGIC.length() + 1)) + " (this bowctl reads " + VERSION + ")");
        if (lines.length != KEYS.size() + 2) throw new CorruptRecordException(file, "expected " + KEYS.size() + " key=value lines, found " + (lines.length - 2));
        Map<String, String> kv = new LinkedHashMap<>();
        for (int i = 0; i < KEYS.size(); i++) {
            String line = lines[i + 1];
            int eq = line.indexOf('=');
            String key = eq < 0 ? line : line.substring(0, eq);
            if (eq < 0 || !key.equals(KEYS.get(i))) throw new CorruptRecordException(file, "line " + (i + 2) + ": expected key " + KEYS.get(i) + ", found " + quote(line));
            kv.put(key, line.substring(eq + 1));
        }
        try {
            return new CheckpointRecord(kv.get("mode"), kv.get("device"), kv.get("cow"), Integer.parseInt(kv.get("retries")),
                    Instant.parse(kv.get("started_at")), kv.get("reason"), State.valueOf(kv.get("state")), kv.get("state_reason"),
                    kv.get("low_space_action"), Integer.parseInt(kv.get("boot_attempts")));
        } catch (NumberFormatException | DateTimeParseException e) {
            throw new CorruptRecordException(file, "bad value: " + e.getMessage());
        } catch (IllegalArgumentException e) {
            throw new CorruptRecordException(file, e.getMessage());
        }
    }

    private static String quote(String s) {
        return "'" + (s.length() > 60 ? s.substring(0, 60) + "..." : s) + "'";
    }

    /** The record at {@code file}, or empty if there is none; a file that is not a valid record is an error. */
    public static Optional<CheckpointRecord> read(Path file) throws IOException {
        byte[] data;
        try {
            data = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            return Optional.empty();
        }
        return Optional.of(decode(data, file));
    }

    /** Atomically replaces the record at {@code file}. */
    public void write(Path file) throws IOException {
        write(file, () -> {});
    }

    /** As {@link #write(Path)}; {@code beforeRename} runs after the temp file is durable (tests crash there). */
    void write(Path file, AtomicFile.IoAction beforeRename) throws IOException {
        byte[] data = encode();
        locked(file, () -> {
            AtomicFile.replace(file, data, beforeRename);
            return null;
        });
    }

    /** Removes the record durably; true if there was one. */
    public static boolean remove(Path file) throws IOException {
        return locked(file, () -> AtomicFile.remove(file));
    }

    /** Work done while holding the record's lock. */
    @FunctionalInterface
    public interface Locked<T> {
        T run() throws IOException;
    }

    private static final java.util.concurrent.ConcurrentHashMap<Path, java.util.concurrent.locks.ReentrantLock> LOCKS =
            new java.util.concurrent.ConcurrentHashMap<>();

    /** The lock file beside the record: {@code checkpoint.rec.lock}. It is never removed (removing lock files races). */
    public static Path lockFile(Path file) {
        return file.toAbsolutePath().resolveSibling(file.getFileName() + ".lock");
    }

    /**
     * Runs {@code body} holding the record's exclusive lock: flock on the sibling {@link #lockFile}
     * (other processes: bowctl, the daemon's low-space policy) and a lock inside this JVM (threads;
     * flock does not exclude them). Every read-modify-write of the record goes through here, so that
     * two updates racing (a low-space abort and a bowctl abort) cannot lose one. Reentrant.
     */
    public static <T> T locked(Path file, Locked<T> body) throws IOException {
        Path lockPath = lockFile(file);
        java.util.concurrent.locks.ReentrantLock inJvm = LOCKS.computeIfAbsent(lockPath.normalize(), k -> new java.util.concurrent.locks.ReentrantLock());
        inJvm.lock();
        try {
            if (inJvm.getHoldCount() > 1) return body.run();
            Files.createDirectories(lockPath.getParent());
            try (FileChannel ch = FileChannel.open(lockPath, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                 java.nio.channels.FileLock ignored = ch.lock()) {
                return body.run();
            }
        } finally {
            inJvm.unlock();
        }
    }

    /** A change of the record; returns the new record, or the given one for no change. */
    @FunctionalInterface
    public interface Change {
        CheckpointRecord apply(CheckpointRecord current) throws IOException;
    }

    /**
     * Read-modify-write under the lock: reads the record, applies {@code change} and writes the
     * result if it differs. Returns the record as it is afterwards; empty (and nothing written)
     * if there is no record.
     */
    public static Optional<CheckpointRecord> update(Path file, Change change) throws IOException {
        return locked(file, () -> {
            Optional<CheckpointRecord> cur = read(file);
            if (cur.isEmpty()) return cur;
            CheckpointRecord next = change.apply(cur.get());
            if (!next.equals(cur.get())) next.write(file);
            return Optional.of(next);
        });
    }

}
