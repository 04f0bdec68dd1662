package bow.lifecycle;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * Small metadata files replaced whole and durably: a temporary file in the same
 * directory is written and fsynced, renamed over the target (atomic), and the
 * directory is fsynced, so after a crash the path holds the old bytes or the new.
 */
public final class AtomicFile {
    private AtomicFile() {}

    @FunctionalInterface
    public interface IoAction {
        void run() throws IOException;
    }

    public static void replace(Path file, byte[] data) throws IOException {
        replace(file, data, () -> {});
    }

    /** As {@link #replace(Path, byte[])}; {@code beforeRename} runs once the temp file is durable (tests crash there). */
    public static void replace(Path file, byte[] data, IoAction beforeRename) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, "." + file.getFileName() + ".", ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                ByteBuffer buf = ByteBuffer.wrap(data);
                while (buf.hasRemaining()) ch.write(buf);
                ch.force(true);
            }
            beforeRename.run();
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        fsyncDir(dir);
    }

    /** Removes the file durably; true if there was one. */
    public static boolean remove(Path file) throws IOException {
        boolean existed = Files.deleteIfExists(file);
        if (existed) fsyncDir(file.toAbsolutePath().getParent());
        return existed;
    }

    private static void fsyncDir(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }
}
