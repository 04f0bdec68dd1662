package bow.ctl;

import bow.blockdev.LinuxNative;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.StartCheckpointRequest;
import bow.proto.StatusRequest;
import bow.lifecycle.CheckpointRecord;
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
                            + "through the daemon (fstrim, or --fitrim MOUNTPOINT here).",
                    "With --retries N the checkpoint is managed across boots: the checkpoint record (--record, $BOW_RECORD, "
                            + "/var/lib/bow/checkpoint.rec) is written first with the daemon's mode, device and COW, and removed again "
                            + "if the daemon refuses to start the checkpoint. Without --retries no record is written."},
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:checkpoint started", "1:failure (e.g. no free space known, the record could not be written)", "5:daemon not reachable",
                    "6:permission denied", "7:invalid state (a checkpoint already ran, or a checkpoint record already exists)"})
    public static final class Start implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Mixin ControlOptions control;

        @Option(names = "--fitrim", paramLabel = "MOUNTPOINT",
                description = "First trim the filesystem mounted here (FITRIM ioctl), so the kernel sends its free space to the daemon as discards.")
        Path fitrim;

        @Option(names = "--retries", paramLabel = "N",
                description = "Boots of the updated system allowed before a rollback (each boot-attempt uses one; -1: never roll back on the boot count alone). Writes the checkpoint record.")
        Integer retries;

        @Option(names = "--reason", paramLabel = "TEXT", defaultValue = "", description = "Why (e.g. the update's name), kept in the record.")
        String reason;

        @Mixin RecordOption record;

        @Override
        public Integer call() {
            return run(spec.commandLine().getOut(), spec.commandLine().getErr());
        }

        /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
        int run(PrintWriter out, PrintWriter err) {
            if (retries != null && retries < -1) {
                err.println("bowctl: --retries must be -1 or more");
                err.flush();
                return ExitCodes.USAGE;
            }
            if (retries != null) {
                try {
                    if (record.read(err).isPresent()) {
                        err.println("bowctl: a checkpoint record already exists at " + record.path()
                                + ": commit or roll back that checkpoint first");
                        err.flush();
                        return ExitCodes.INVALID_STATE;
                    }
                } catch (RecordOption.Failed f) {
                    return f.code;
                }
            }
            if (fitrim != null) {
                try {
                    long trimmed = fitrim(fitrim);
                    out.println("trimmed " + trimmed + " bytes of free space on " + fitrim);
                } catch (LastErrorException e) {
                    err.println("bowctl: FITRIM on " + fitrim + " failed: " + LinuxNative.describe(e));
                    err.flush();
                    return ExitCodes.FAILURE;
                }
            }
            int[] code = {0};
            if (retries != null) {
                // The record goes first: a crash after the start leaves a record (a boot cleans up one whose device has no
                // checkpoint), never a checkpoint that no boot knows about.
                Response st = control.call(Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build(), err, code);
                if (st == null || code[0] != 0) return code[0];
                String dev = st.getStatus().getDetailsOrDefault("device_path", st.getStatus().getDevice());
                String cowPath = st.getStatus().getDetailsOrDefault("cow_path", "");
                try {
                    record.write(CheckpointRecord.start(st.getStatus().getMode(), dev, cowPath, retries,
                            reason.replaceAll("\\p{Cntrl}", " ")), err);
                } catch (IllegalArgumentException e) {
                    err.println("bowctl: cannot record this checkpoint: " + e.getMessage());
                    err.flush();
                    return ExitCodes.FAILURE;
                } catch (RecordOption.Failed f) {
                    return f.code;
                }
            }
            Response r = control.call(Request.newBuilder().setStartCheckpoint(StartCheckpointRequest.getDefaultInstance()).build(), err, code);
            if (r != null && code[0] == 0) out.println(r.getMessage());
            if (retries != null) {
                if (code[0] == 0) {
                    out.println("checkpoint record " + record.path() + " written: "
                            + (retries < 0 ? "no boot limit" : retries + " boot" + (retries == 1 ? "" : "s") + " before rollback"));
                } else if (r != null) {
                    // The daemon answered: the checkpoint did not start, so the record goes.
                    try {
                        record.remove(err);
                    } catch (RecordOption.Failed f) {
                        // reported; the start failure's code stands
                    }
                } else {
                    // No answer: the checkpoint may have started. Keep the record; the next boot
                    // sees whether the device carries a checkpoint and cleans up if it does not.
                    err.println("bowctl: no answer from the daemon; keeping the record " + record.path()
                            + " in case the checkpoint started (bow-boot cleans it up if it did not)");
                    err.flush();
                }
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
