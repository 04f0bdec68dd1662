package bow.ctl;

import bow.testing.HostTools;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * The VM harness (vmtest/vmrun) from Java: boots this machine's Debian kernel under qemu with a
 * script, image files as virtio disks (/dev/vda, /dev/vdb, ...) and NBD sockets as virtio-serial
 * ports (in the guest: /run/nbd.sock, one port per connection, in order).
 */
final class Vm {
    static final Path VMRUN = locate();

    private static Path locate() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isExecutable(p.resolve("vmtest/vmrun"))) return p.resolve("vmtest/vmrun");
        }
        return Path.of("vmtest/vmrun");
    }

    /** What a kernel test needs on the host: root, qemu, a kernel in /boot with its modules, busybox, socat. */
    static void require(String... tools) {
        HostTools.require(HostTools.isRoot(), "root is needed");
        HostTools.require(Files.isExecutable(VMRUN), "vmtest/vmrun not found");
        HostTools.requireTools("qemu-system-x86_64", "busybox", "socat", "modprobe");
        HostTools.requireTools(tools);
        HostTools.require(kernel() != null, "a kernel in /boot (vmlinuz-*) with its modules in /lib/modules is needed"
                + " (apt-get install linux-image-amd64)");
    }

    static Path kernel() {
        try (Stream<Path> s = Files.list(Path.of("/boot"))) {
            return s.filter(p -> p.getFileName().toString().startsWith("vmlinuz-"))
                    .filter(p -> Files.isDirectory(Path.of("/lib/modules", p.getFileName().toString().substring(8))))
                    .filter(Files::isReadable).sorted().reduce((a, b) -> b).orElse(null);
        } catch (IOException e) {
            return null;
        }
    }

    /** Output (the script's stdout and stderr) and exit code of one boot; {@code console} is the whole serial log. */
    record Result(int code, String output, String errors, Path console) {
        Result ok() {
            if (code != 0) fail("the VM script exited " + code + "\n--- output:\n" + output + "\n--- vmrun:\n" + errors);
            return this;
        }
    }

    private final Path dir;
    private final List<String> args = new ArrayList<>();
    private int boots;

    Vm(Path dir) {
        this.dir = dir;
    }

    Vm disk(Path image) { args.add("--disk"); args.add(image.toString()); return this; }
    Vm nbd(Path socket) { args.add("--nbd"); args.add(socket.toString()); return this; }
    Vm cpus(int n) { args.add("--cpus"); args.add(Integer.toString(n)); return this; }
    Vm bins(String... programs) { for (String p : programs) { args.add("--bin"); args.add(p); } return this; }
    Vm modules(String... modules) { for (String m : modules) { args.add("--module"); args.add(m); } return this; }

    /** Boots once with the options given so far and {@code script} (busybox sh); the options are then cleared. */
    Result run(String script) throws IOException, InterruptedException {
        int n = ++boots;
        Path file = dir.resolve("vm" + n + ".sh"), console = dir.resolve("vm" + n + ".console"),
                out = dir.resolve("vm" + n + ".out"), err = dir.resolve("vm" + n + ".err");
        Files.writeString(file, script);
        List<String> cmd = new ArrayList<>(List.of(VMRUN.toString(), "--timeout", "400", "--log", console.toString()));
        cmd.addAll(args);
        cmd.add(file.toString());
        args.clear();
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        if (!p.waitFor(450, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("vmrun did not finish in 450 s: " + Files.readString(err));
        }
        Result r = new Result(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8),
                Files.readString(err, StandardCharsets.UTF_8), console);
        System.out.printf("vm boot %d: exit %d in %.1f s%n", n, r.code, (System.nanoTime() - t0) / 1e9);
        return r;
    }
}
