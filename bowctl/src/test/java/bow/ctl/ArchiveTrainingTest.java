package bow.ctl;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogCorruptException;
import bow.restore.LogChain;
import bow.restore.LogInspector;
import bow.restore.ProgressListener;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The class-data archive's training call: its offline verify runs on a real checkpoint and leaves nothing behind. */
class ArchiveTrainingTest {
    @Test
    void theTrainingImageIsACheckpointThatVerifies() throws IOException {
        LogChain.Summary s = LogInspector.verify(new MemoryBlockDevice(Main.trainingImage()), "training", ProgressListener.NONE);
        assertEquals(4096, s.blockSize());
        assertEquals(1, s.sequences());
        assertEquals(2, s.entries());
        assertEquals(17 * 4096, s.bytes());
        assertEquals(8, s.sector0(), "live block 0 at block 1");
    }

    @Test
    void aDamagedBackupInTheTrainingImageFailsItsChecksum() {
        for (int block : new int[] {2, 24, 39}) {
            byte[] img = Main.trainingImage();
            img[block * 4096 + 100] ^= 1;
            assertThrows(LogCorruptException.class,
                    () -> LogInspector.verify(new MemoryBlockDevice(img), "training", ProgressListener.NONE), "block " + block);
        }
    }

    @Test
    void trainingVerifiesItsImageAndDeletesIt() throws IOException {
        List<Path> before = leftovers();
        assertEquals(ExitCodes.OK, Main.trainOffline());
        assertEquals(before, leftovers(), "temporary training images left behind");
    }

    @Test
    void everyDaemonCommandOfTheTrainingSucceedsAndNothingIsLeftBehind() throws IOException {
        List<Path> before = leftovers();
        assertEquals(Main.DAEMON_TRAINING.length, Main.trainDaemonCommands());
        assertEquals(before, leftovers(), "temporary training sockets left behind");
    }

    @Test
    void theTrainingCommandsAreAllOnTheFastPathAndTouchNoRecord() {
        for (String[] args : Main.DAEMON_TRAINING) {
            String line = String.join(" ", args);
            assertFalse(line.contains("--record") || line.startsWith("checkpoint") || line.startsWith("commit"), line);
            // A fast-path command answers without picocli: against a socket that is not there, "not running".
            String[] a = args.clone();
            for (int i = 0; i < a.length; i++) a[i] = a[i].replace("%s", "/nonexistent/bowctl-cds-test.sock");
            java.io.StringWriter err = new java.io.StringWriter();
            Integer code = FastPath.tryRun(a, new java.io.PrintWriter(new java.io.StringWriter()), new java.io.PrintWriter(err, true));
            assertEquals(ExitCodes.DAEMON_UNREACHABLE, code, line + ": " + err);
        }
    }

    private static List<Path> leftovers() throws IOException {
        List<Path> l = new ArrayList<>();
        try (DirectoryStream<Path> d = Files.newDirectoryStream(Path.of(System.getProperty("java.io.tmpdir")), "bowctl-cds-*")) {
            d.forEach(l::add);
        }
        l.sort(null);
        return l;
    }
}
