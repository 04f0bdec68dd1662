package bow.blockdev;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class FileBlockDeviceTest {
    @TempDir Path dir;

    @Test
    void readsWritesAndPunchesHoles() throws Exception {
        Path img = dir.resolve("a.img");
        FileBlockDevice.createSparse(img, 1 << 20);
        try (FileBlockDevice dev = FileBlockDevice.open(img, false)) {
            assertEquals(1 << 20, dev.size());
            ByteBuffer data = ByteBuffer.allocate(8192);
            for (int i = 0; i < 8192; i++) data.put((byte) (i * 7 + 1));
            dev.write(4096, data.flip());
            dev.flush();
            ByteBuffer back = ByteBuffer.allocate(8192);
            dev.read(4096, back);
            assertArrayEquals(data.array(), back.array());

            dev.discard(4096, 4096);
            ByteBuffer after = ByteBuffer.allocate(8192);
            dev.read(4096, after);
            for (int i = 0; i < 4096; i++) assertEquals(0, after.get(i), "punched hole reads as zeros");
            for (int i = 4096; i < 8192; i++) assertEquals(data.get(i), after.get(i), "outside the hole untouched");
        }
        assertEquals(1 << 20, Files.size(img), "punching keeps the size");
    }

    @Test
    void rejectsOutOfRangeAndReadOnlyWrites() throws Exception {
        Path img = dir.resolve("b.img");
        FileBlockDevice.createSparse(img, 65536);
        try (FileBlockDevice dev = FileBlockDevice.open(img, true)) {
            DeviceException e = assertThrows(DeviceException.class, () -> dev.write(0, ByteBuffer.allocate(512)));
            assertEquals(Errno.EPERM, e.errno());
            e = assertThrows(DeviceException.class, () -> dev.read(65536 - 256, ByteBuffer.allocate(512)));
            assertEquals(Errno.EINVAL, e.errno());
        }
        assertThrows(java.io.IOException.class, () -> FileBlockDevice.open(dir.resolve("missing"), false));
    }

    @Test
    void oneWriterAtATime() throws Exception {
        Path img = dir.resolve("c.img");
        FileBlockDevice.createSparse(img, 65536);
        try (FileBlockDevice first = FileBlockDevice.open(img, false)) {
            DeviceException e = assertThrows(DeviceException.class, () -> FileBlockDevice.open(img, false));
            assertTrue(e.getMessage().contains("in use"), e.getMessage());
            try (FileBlockDevice reader = FileBlockDevice.open(img, true)) {
                assertEquals(65536, reader.size(), "readers are not locked out");
            }
        }
        FileBlockDevice.open(img, false).close();   // free again once closed
    }

    @Test
    void theLockSurvivesOtherDescriptorsOfTheFileClosing() throws Exception {
        Path img = dir.resolve("d.img");
        FileBlockDevice.createSparse(img, 65536);
        try (FileBlockDevice first = FileBlockDevice.open(img, false)) {
            assertThrows(DeviceException.class, () -> FileBlockDevice.open(img, false), "second writer refused");
            // that refused open closed its descriptors; a POSIX (fcntl) lock would be gone now
            DeviceException e = assertThrows(DeviceException.class, () -> FileBlockDevice.open(img, false),
                    "a third writer is still refused after the refused second one");
            assertTrue(e.getMessage().contains("in use"), e.getMessage());
            FileBlockDevice.open(img, true).close();      // a reader opening and closing the file
            Files.readAllBytes(img);                      // any other descriptor, too
            assertThrows(DeviceException.class, () -> FileBlockDevice.open(img, false), "still refused after readers closed");
            first.write(0, java.nio.ByteBuffer.wrap(new byte[] {7}));
        }
        FileBlockDevice.open(img, false).close();
    }

    @Test
    void anotherProcessIsRefusedWhileHeldAndAdmittedAfterClose() throws Exception {
        Path flock = Path.of("/usr/bin/flock");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isExecutable(flock), "util-linux flock not installed");
        Path img = dir.resolve("e.img");
        FileBlockDevice.createSparse(img, 65536);
        try (FileBlockDevice first = FileBlockDevice.open(img, false)) {
            assertEquals(1, runFlock(flock, img), "flock -n in another process is refused while bowd holds the device");
            assertThrows(DeviceException.class, () -> FileBlockDevice.open(img, false));
            assertEquals(1, runFlock(flock, img), "still refused after a refused second open in this process closed its descriptors");
            FileBlockDevice.open(img, true).close();
            assertEquals(1, runFlock(flock, img), "and after a reader closed its descriptor");
        }
        assertEquals(0, runFlock(flock, img), "free once closed");
    }

    private static int runFlock(Path flock, Path img) throws Exception {
        Process p = new ProcessBuilder(flock.toString(), "-n", "-E", "1", img.toString(), "true").redirectErrorStream(true).start();
        assertTrue(p.waitFor(20, java.util.concurrent.TimeUnit.SECONDS), "flock hung");
        return p.exitValue();
    }
}
