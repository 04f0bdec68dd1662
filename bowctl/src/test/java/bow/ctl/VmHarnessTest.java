package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** vmtest/vmrun's own contract: usage errors, and one boot: output, exit code, disks both ways. */
class VmHarnessTest {
    @TempDir Path dir;

    @Test
    void usageAndMissingPiecesAreReportedWithoutBooting() throws Exception {
        HostTools.require(Files.isExecutable(Vm.VMRUN), "vmtest/vmrun not found");
        HostTools.Result none = HostTools.run(List.of(Vm.VMRUN.toString()), 30);
        assertEquals(2, none.code(), none.output());
        assertTrue(none.output().contains("SCRIPT"), none.output());
        Path script = Files.writeString(dir.resolve("s.sh"), "exit 0\n");
        HostTools.Result noKernel = HostTools.run(List.of(Vm.VMRUN.toString(), "--kernel", dir.resolve("none").toString(), script.toString()), 30);
        assertEquals(1, noKernel.code(), noKernel.output());
        assertTrue(noKernel.output().contains("cannot read kernel"), noKernel.output());
    }

    @Test
    void oneBootReturnsOutputExitCodeAndDiskWrites() throws Exception {
        Vm.require();
        Path in = dir.resolve("in.img"), out = dir.resolve("out.img");
        byte[] data = new byte[1 << 20];
        new java.util.Random(3).nextBytes(data);
        Files.write(in, data);
        bow.blockdev.FileBlockDevice.createSparse(out, 1 << 20);
        Vm.Result r = new Vm(dir).disk(in).disk(out).run("""
                echo "size $(blockdev --getsize64 /dev/vda)"
                dd if=/dev/vda of=/dev/vdb bs=65536 2>/dev/null
                sync
                echo "done"
                exit 7
                """);
        assertEquals(7, r.code(), r.errors());
        assertEquals("size 1048576\ndone\n", r.output());
        assertArrayEquals(data, Files.readAllBytes(out), "the guest's writes are in the host's file");
        assertTrue(Files.readString(r.console()).contains("BOWVM-EXIT 7"));
        assertTrue(Arrays.equals(data, Files.readAllBytes(in)));
    }
}
