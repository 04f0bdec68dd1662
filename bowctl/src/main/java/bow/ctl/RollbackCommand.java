package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.control.ControlClient;
import bow.lifecycle.CheckpointRecord;
import bow.snapshot.PersistentMerge;
import picocli.CommandLine.Mixin;
import bow.restore.LogChain;
import bow.restore.LogInspector;
import bow.restore.Restore;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.BufferedReader;
import java.io.Console;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code bowctl rollback}: the offline rollback of a checkpoint (bow: restore the log; persistent: merge the COW), no daemon needed. */
@Command(name = "rollback", mixinStandardHelpOptions = true,
        description = {"Roll a checkpoint back on the raw device, with no daemon running (as a recovery image would).",
                "bow mode: the whole log is validated first; a log that fails validation leaves the device untouched.",
                "persistent mode (--mode persistent --cow COW): the COW is merged back into the origin.",
                "An interrupted rollback resumes where it stopped when run again.",
                "Without --device, the device, mode and COW come from the checkpoint record (--record, $BOW_RECORD, "
                        + "/var/lib/bow/checkpoint.rec); then the rollback is refused while a daemon answers on the control socket, "
                        + "the record is removed after a successful rollback, and a device that carries no checkpoint any more "
                        + "(already rolled back) only has its record removed (exit 0)."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:rolled back (or, with --force-roll-forward, committed)",
                "1:I/O or other failure", "2:usage error", "3:no checkpoint on the device (--device), or no record (without --device)",
                "4:log failed validation (device untouched), or the record is corrupt", "6:permission denied",
                "7:invalid state (--force-roll-forward on a half-restored device; a daemon is running; the record says a commit was started)",
                "8:persistent: the COW's snapshot was not taken of --device (size or fingerprint differs); nothing was changed"})
public final class RollbackCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Option(names = "--device", paramLabel = "PATH", description = "Raw block device or image file (persistent: the origin). Default: from the record.")
    Path device;

    @Option(names = "--mode", paramLabel = "bow|persistent", description = "bow (default with --device) or persistent. Default: from the record.")
    String mode;

    @Option(names = "--cow", paramLabel = "PATH", description = "persistent mode: the COW device. Default: from the record.")
    Path cow;

    @Option(names = "--control", paramLabel = "PATH", hidden = true,
            description = "Control socket checked for a running daemon (record mode).")
    Path control;

    @Option(names = "--force-roll-forward",
            description = "If the log fails validation, commit instead (put the live block 0 back), as vold does. "
                    + "The update's changes are kept; nothing is rolled back.")
    boolean forceRollForward;

    @Option(names = {"-y", "--yes"}, description = "Do not ask for confirmation on a terminal.")
    boolean yes;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        boolean fromRecord = device == null;
        if (fromRecord) {
            if (mode != null || cow != null) {
                err.println("bowctl: --mode and --cow go with --device (without --device they come from the record)");
                err.flush();
                return ExitCodes.USAGE;
            }
            try {
                CheckpointRecord r = record.require(err);
                if (r.state() == CheckpointRecord.State.COMMIT_REQUESTED) {
                    err.println("bowctl: refusing to roll back: a commit of " + r.device() + " was started (" + r.stateReason()
                            + ") and may have written already; finish it with 'bowctl commit --device " + r.device() + "'");
                    err.flush();
                    return ExitCodes.INVALID_STATE;
                }
                device = Path.of(r.device());
                mode = r.mode();
                cow = r.cow().isEmpty() ? null : Path.of(r.cow());
            } catch (RecordOption.Failed f) {
                return f.code;
            }
            ControlOptions c = new ControlOptions();
            c.control = control;
            try (ControlClient client = ControlClient.connect(c.socket())) {
                err.println("bowctl: a daemon is running (control socket " + c.socket() + "): stop it, and everything using its device, "
                        + "before rolling " + device + " back");
                err.flush();
                return ExitCodes.INVALID_STATE;
            } catch (IOException notRunning) {
                // as it should be
            }
        }
        if (mode == null) mode = "bow";
        int code;
        if ("persistent".equals(mode)) {
            code = mergePersistent(out, err);
        } else if ("bow".equals(mode)) {
            if (cow != null) {
                err.println("bowctl: --cow is for --mode persistent");
                err.flush();
                return ExitCodes.USAGE;
            }
            code = restoreBow(out, err);
        } else {
            err.println("bowctl: unknown --mode " + mode + " (bow or persistent)");
            err.flush();
            return ExitCodes.USAGE;
        }
        if (!fromRecord) return code;
        if (code == ExitCodes.NO_CHECKPOINT) {
            out.println("nothing to roll back on " + device + " (already rolled back or never started); removing the record");
            code = ExitCodes.OK;
        }
        code = record.removeAfter(code, out, err);
        out.flush();
        return code;
    }

    private int mergePersistent(PrintWriter out, PrintWriter err) {
        if (cow == null) {
            err.println("bowctl: --mode persistent needs --cow PATH");
            err.flush();
            return ExitCodes.USAGE;
        }
        if (forceRollForward) {
            err.println("bowctl: --force-roll-forward is for bow mode");
            err.flush();
            return ExitCodes.USAGE;
        }
        long start = System.nanoTime();
        try (BlockDevice origin = OfflineDevice.open(device, false); BlockDevice c = OfflineDevice.open(cow, false)) {
            boolean tty = System.console() != null;
            PersistentMerge.Result r;
            try {
                r = PersistentMerge.run(origin, c, (done, total) -> {
                    if (tty) {
                        err.print("\rmerge: " + done + " / " + total + " chunks");
                        err.flush();
                    }
                });
            } finally {
                if (tty) err.print("\r\033[K");
            }
            if (!r.snapshotFound()) {
                err.println("bowctl: no snapshot on " + cow + ": nothing to roll back");
                err.flush();
                return ExitCodes.NO_CHECKPOINT;
            }
            out.printf(Locale.ROOT, "rolled back %s from %s: %d chunks merged in %.1f s%n", device, cow, r.chunksMerged(),
                    (System.nanoTime() - start) / 1e9);
            out.flush();
            return ExitCodes.OK;
        } catch (IOException e) {
            return OfflineDevice.report(err, device, e);
        }
    }

    private int restoreBow(PrintWriter out, PrintWriter err) {
        long start = System.nanoTime();
        try (BlockDevice dev = OfflineDevice.open(device, false)) {
            ProgressLine progress = new ProgressLine(err);
            Console console = System.console();
            if (console != null && !yes && !confirm(dev, console, out, progress)) {
                err.println("bowctl: rollback cancelled; the device was not modified");
                return ExitCodes.FAILURE;
            }
            Restore.Result r;
            try {
                r = new Restore(dev, device.toString()).forceRollForward(forceRollForward).progress(progress).run();
            } finally {
                progress.clear();
            }
            double secs = (System.nanoTime() - start) / 1e9;
            if (r.rolledForward()) {
                err.println("bowctl: log failed validation: " + r.validationError());
                out.printf(Locale.ROOT, "rolled forward %s: the checkpoint is committed (live block 0 put back), nothing was restored (%.1f s)%n",
                        device, secs);
            } else {
                out.printf(Locale.ROOT, "rolled back %s%s: %d sequences, %d entries, %d bytes restored in %.1f s%n",
                        device, r.resumed() ? " (resumed an interrupted rollback)" : "",
                        r.sequences(), r.entries(), r.bytes(), secs);
            }
            out.flush();
            return ExitCodes.OK;
        } catch (IOException e) {
            int code = OfflineDevice.report(err, device, e);
            if (code == ExitCodes.LOG_INVALID) {
                err.println("bowctl: " + device + " was not modified"
                        + (forceRollForward ? "" : "; --force-roll-forward would commit the checkpoint instead"));
                err.flush();
            }
            return code;
        }
    }

    /** Validates first so the question can say what will happen; a log that fails validation is reported instead. */
    private boolean confirm(BlockDevice dev, Console console, PrintWriter out, ProgressLine progress) throws IOException {
        LogChain.Summary s;
        try {
            s = LogInspector.verify(dev, device.toString(), progress);
        } catch (bow.bowlog.LogCorruptException e) {
            if (!forceRollForward) throw e;
            progress.clear();
            out.println("log failed validation: " + e.getMessage());
            out.print("Commit the checkpoint on " + device + " instead (the update's changes stay)? [y/N] ");
            out.flush();
            return isYes(console.reader());
        } finally {
            progress.clear();
        }
        out.println("checkpoint on " + device + ": " + LogInspector.totals(s));
        out.print("Roll " + device + " back to the checkpoint? Changes made since are lost. [y/N] ");
        out.flush();
        return isYes(console.reader());
    }

    private static boolean isYes(java.io.Reader reader) throws IOException {
        String line = new BufferedReader(reader).readLine();
        return line != null && (line.trim().equalsIgnoreCase("y") || line.trim().equalsIgnoreCase("yes"));
    }
}
