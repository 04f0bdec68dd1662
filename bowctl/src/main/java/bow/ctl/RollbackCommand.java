package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.restore.LogChain;
import bow.restore.LogInspector;
import bow.restore.Restore;
import bow.snapshot.PersistentMerge;
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

/** {@code bowctl rollback --device PATH}: the offline restore of a bow-mode checkpoint, no daemon needed. */
@Command(name = "rollback", mixinStandardHelpOptions = true,
        description = {"Roll a checkpoint back on the raw device or image, with no daemon running.",
                "bow mode: restore from the log in block 0. persistent mode (--mode persistent --cow COW): merge the COW back.",
                "The whole log is validated first; a log that fails validation leaves the device untouched.",
                "An interrupted rollback resumes where it stopped when run again."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:rolled back (or, with --force-roll-forward, committed)",
                "1:I/O or other failure", "2:usage error", "3:no checkpoint on the device",
                "4:log failed validation, device untouched", "6:permission denied",
                "7:invalid state (--force-roll-forward on a half-restored device)"})
public final class RollbackCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--device", required = true, paramLabel = "PATH", description = "Raw block device or image file.")
    Path device;

    @Option(names = "--force-roll-forward",
            description = "If the log fails validation, commit instead (put the live block 0 back), as vold does. "
                    + "The update's changes are kept; nothing is rolled back.")
    boolean forceRollForward;

    @Option(names = {"-y", "--yes"}, description = "Do not ask for confirmation on a terminal.")
    boolean yes;

    @Option(names = "--mode", defaultValue = "bow", paramLabel = "bow|persistent",
            description = "bow (default): restore from the log in the device's block 0. persistent: merge the COW (--cow) back into the device.")
    String mode;

    @Option(names = "--cow", paramLabel = "PATH", description = "persistent mode: the COW device or file holding the snapshot.")
    Path cow;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        long start = System.nanoTime();
        if ("persistent".equals(mode)) return mergePersistent(out, err, start);
        if (!"bow".equals(mode)) {
            err.println("bowctl: unknown --mode " + mode + " (bow or persistent)");
            err.flush();
            return ExitCodes.USAGE;
        }
        if (cow != null) {
            err.println("bowctl: --cow is for --mode persistent");
            err.flush();
            return ExitCodes.USAGE;
        }
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

    /**
     * Offline merge of a dm-snapshot COW back into the origin: newest exceptions
     * first, each run flushed before its metadata is cleared, so a rerun after an
     * interruption finishes the job.
     */
    private int mergePersistent(PrintWriter out, PrintWriter err, long start) {
        if (cow == null) {
            err.println("bowctl: --mode persistent needs --cow PATH");
            err.flush();
            return ExitCodes.USAGE;
        }
        try (BlockDevice origin = OfflineDevice.open(device, false); BlockDevice cowDev = OfflineDevice.open(cow, false)) {
            ProgressLine progress = new ProgressLine(err);
            PersistentMerge.Result r;
            try {
                r = PersistentMerge.run(origin, cowDev, (done, total) -> progress.progress("merge", done, total));
            } finally {
                progress.clear();
            }
            if (!r.snapshotFound()) {
                err.println("bowctl: no snapshot on " + cow + ": nothing to roll back");
                err.flush();
                return ExitCodes.NO_CHECKPOINT;
            }
            out.printf(Locale.ROOT, "merged %s back into %s: %d chunks in %.1f s; the snapshot is removed%n",
                    cow, device, r.chunksMerged(), (System.nanoTime() - start) / 1e9);
            out.flush();
            return ExitCodes.OK;
        } catch (IOException e) {
            return OfflineDevice.report(err, device, e);
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
