package bow.ctl;

import bow.testing.HostTools;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** Real NBD clients (qemu-io, nbdcopy) and bowctl against a {@code bowd --mode shared}, for the shared-mode end-to-end tests. */
final class SharedClients {
    private SharedClients() {}

    static String uri(Path sock, String export) {
        return "nbd+unix:///" + export + "?socket=" + sock;
    }

    /** The whole export, read with nbdcopy into {@code file}. */
    static byte[] read(Path sock, String export, Path file) throws Exception {
        Files.deleteIfExists(file);
        HostTools.run(List.of("nbdcopy", uri(sock, export), file.toString()), 300).checkOk();
        return Files.readAllBytes(file);
    }

    /** nbdcopy of {@code file} onto the export from offset 0, flushed before nbdcopy exits. */
    static HostTools.Result write(Path file, Path sock, String export) throws Exception {
        return HostTools.run(List.of("nbdcopy", "--flush", file.toString(), uri(sock, export)), 300);
    }

    /** One qemu-io process running {@code commands} (each a -c) on the export, in order. */
    static HostTools.Result qemuIo(Path sock, String export, List<String> commands) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw", uri(sock, export)));
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        return HostTools.run(cmd, 300);
    }

    /** qemu-io prints failed commands but may still exit 0: an error line fails the call too. */
    static void checkQemuIo(HostTools.Result r) {
        r.checkOk();
        assertFalse(r.output().contains("failed") || r.output().contains("error"), String.join(" ", r.command()) + ":\n" + r.output());
    }

    static OfflineCommandsTest.Run ctl(Path control, String... args) {
        String[] a = Arrays.copyOf(args, args.length + 2);
        a[args.length] = "--control";
        a[args.length + 1] = control.toString();
        return OfflineCommandsTest.bowctl(a);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> json(OfflineCommandsTest.Run r) {
        assertEquals(0, r.code(), r.err());
        return (Map<String, Object>) MiniJson.parse(r.out().trim());
    }

    /** {@code bowctl snapshot create}: the new ID. */
    static int create(Path control, String... flags) {
        String[] a = new String[flags.length + 2];
        a[0] = "snapshot";
        a[1] = "create";
        System.arraycopy(flags, 0, a, 2, flags.length);
        OfflineCommandsTest.Run r = ctl(control, a);
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().trim().matches("\\d+"), r.out());
        return Integer.parseInt(r.out().trim());
    }

    /** {@code bowctl shared check --cow} on the stopped daemon's COW must be clean. */
    static void assertCheckClean(Path cow) {
        OfflineCommandsTest.Run c = OfflineCommandsTest.bowctl("shared", "check", "--cow", cow.toString());
        assertEquals(0, c.code(), "shared check --cow " + cow + ":\n" + c.out() + c.err());
    }

    /** Equal byte for byte, or a failure naming the first differing offset. */
    static void assertSame(byte[] expected, byte[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": size");
        int i = Arrays.mismatch(expected, actual);
        if (i >= 0) fail(what + ": differs first at byte " + i + " (expected " + (expected[i] & 0xff) + ", got " + (actual[i] & 0xff) + ")");
    }
}
