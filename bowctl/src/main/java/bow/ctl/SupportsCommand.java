package bow.ctl;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.File;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code bowctl supports}: can checkpoints work on this system (vold's supportsCheckpoint)? */
@Command(name = "supports", mixinStandardHelpOptions = true,
        description = {"Check that checkpoints can work here: the checkpoint record's directory exists (or can be created) and is writable, "
                + "and the daemon's NBD export can be attached as a block device — the kernel's nbd driver (/dev/nbd0) with nbd-client, "
                + "or FUSE (/dev/fuse) with nbdfuse and losetup. Prints what it found."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:checkpoints are supported", "1:not supported (the message says what is missing)"})
public final class SupportsCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        Path dir = record.path().toAbsolutePath().getParent();
        Path existing = dir;
        while (existing != null && !Files.exists(existing)) existing = existing.getParent();
        boolean recordOk = existing != null && Files.isDirectory(existing) && Files.isWritable(existing);
        boolean kernelNbd = Files.exists(Path.of("/dev/nbd0")) && onPath("nbd-client");
        boolean fuse = Files.exists(Path.of("/dev/fuse")) && onPath("nbdfuse") && onPath("losetup");
        out.println("record directory " + dir + ": " + (recordOk ? "writable" : "NOT writable"));
        out.println("kernel nbd (/dev/nbd0 + nbd-client): " + (kernelNbd ? "yes" : "no"));
        out.println("FUSE (/dev/fuse + nbdfuse + losetup): " + (fuse ? "yes" : "no"));
        boolean ok = recordOk && (kernelNbd || fuse);
        out.println(ok ? "checkpoints supported" : "checkpoints NOT supported");
        out.flush();
        return ok ? ExitCodes.OK : ExitCodes.FAILURE;
    }

    static boolean onPath(String tool) {
        String path = System.getenv("PATH");
        if (path == null) return false;
        for (String d : path.split(File.pathSeparator)) {
            if (!d.isEmpty() && Files.isExecutable(Path.of(d, tool))) return true;
        }
        return false;
    }
}
