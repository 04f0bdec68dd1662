package bow.ctl;

import bow.blockdev.LinuxNative;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.StartCheckpointRequest;
import com.sun.jna.LastErrorException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code bowctl checkpoint start}: state 0 → 1. */
@Command(name = "checkpoint", mixinStandardHelpOptions = true,
        description = "Manage the checkpoint.",
        subcommands = {CheckpointCommand.Start.class})
public final class CheckpointCommand implements Runnable {
    @Spec CommandSpec spec;

    @Override
    public void run() {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "missing subcommand (start)");
    }

    @Command(name = "start", mixinStandardHelpOptions = true,
            description = {"Start a checkpoint: from now on every block that holds data is backed up before it is overwritten.",
                    "In bow mode the daemon must first learn the free space: trim the filesystem while it is mounted "
                            + "through the daemon (fstrim, or --fitrim MOUNTPOINT here)."},
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:checkpoint started", "1:failure (e.g. no free space known)", "5:daemon not reachable",
                    "6:permission denied", "7:invalid state (a checkpoint already ran)"})
    public static final class Start implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Mixin ControlOptions control;

        @Option(names = "--fitrim", paramLabel = "MOUNTPOINT",
                description = "First trim the filesystem mounted here (FITRIM ioctl), so the kernel sends its free space to the daemon as discards.")
        Path fitrim;

        @Option(names = "--retries", defaultValue = "0", paramLabel = "N",
                description = "If the daemon fails the start with a plain error (not invalid state, not permission), "
                        + "trim again (with --fitrim) and retry up to N more times. Default ${DEFAULT-VALUE}.")
        int retries;

        @Override
        public Integer call() {
            PrintWriter out = spec.commandLine().getOut();
            PrintWriter err = spec.commandLine().getErr();
            if (retries < 0) {
                err.println("bowctl: --retries must be 0 or more");
                err.flush();
                return ExitCodes.USAGE;
            }
            int[] code = {0};
            for (int attempt = 0; ; attempt++) {
                if (fitrim != null) {
                    try {
                        long trimmed = fitrim(fitrim);
                        out.println("trimmed " + trimmed + " bytes of free space on " + fitrim);
                        out.flush();
                    } catch (LastErrorException e) {
                        err.println("bowctl: FITRIM on " + fitrim + " failed: " + LinuxNative.describe(e));
                        err.flush();
                        return ExitCodes.FAILURE;
                    }
                }
                Response r = control.call(Request.newBuilder().setStartCheckpoint(StartCheckpointRequest.getDefaultInstance()).build(), err, code);
                if (r != null && code[0] == 0) out.println(r.getMessage());
                // Only a plain failure may be transient; a refused or ill-timed start will not change by retrying.
                boolean retryable = r != null && r.getCode() == Response.Code.ERROR;
                if (code[0] == 0 || !retryable || attempt >= retries) break;
                err.println("bowctl: retrying checkpoint start (" + (attempt + 1) + " of " + retries + ")");
                err.flush();
            }
            out.flush();
            return code[0];
        }
    }

    /** FITRIM on a mounted filesystem; returns the bytes the kernel says it trimmed. */
    static long fitrim(Path mountpoint) {
        int fd = LinuxNative.open(mountpoint.toString(), LinuxNative.O_RDONLY | LinuxNative.O_DIRECTORY | LinuxNative.O_CLOEXEC);
        try {
            long[] range = {0, -1L, 0};   // struct fstrim_range {start, len, minlen}: the whole filesystem
            LinuxNative.ioctl(fd, LinuxNative.FITRIM, range);
            return range[1];
        } finally {
            LinuxNative.close(fd);
        }
    }
}
