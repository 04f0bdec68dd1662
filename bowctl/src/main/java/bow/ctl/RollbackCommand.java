package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.control.ControlClient;
import bow.lifecycle.CheckpointRecord;
import bow.snapshot.PersistentMerge;
import picocli.CommandLine.Mixin;
import bow.restore.LogChain;
import bow.restore.LogInspector;
import bow.restore.Restore;
import bow.shared.SharedCheck;
import bow.shared.SharedEngine;
import bow.shared.SharedFormat;
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

/**
 * {@code bowctl rollback}: the offline rollback of a checkpoint (bow: restore the log; persistent: merge the COW; shared:
 * make the origin a snapshot's content), no daemon needed.
 */
@Command(name = "rollback", mixinStandardHelpOptions = true,
        description = {"Roll a checkpoint back on the raw device, with no daemon running (as a recovery image would).",
                "bow mode: the whole log is validated first; a log that fails validation leaves the device untouched.",
                "persistent mode (--mode persistent --cow COW): the COW is merged back into the origin.",
                "shared mode (--mode shared --cow COW --snapshot ID|NAME): the origin becomes that snapshot's content; every "
                        + "snapshot, the target too, is kept. The COW is checked first (as 'bowctl shared check' does); a COW that "
                        + "fails the check is not used and nothing is changed.",
                "An interrupted rollback resumes where it stopped when run again.",
                "Without --device, the device, mode and COW come from the checkpoint record (--record, $BOW_RECORD, "
                        + "/var/lib/bow/checkpoint.rec); then the rollback is refused while a daemon answers on the control socket, "
                        + "the record is removed after a successful rollback, and a device that carries no checkpoint any more "
                        + "(already rolled back) only has its record removed (exit 0)."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:rolled back (or, with --force-roll-forward, committed)",
                "1:I/O or other failure", "2:usage error", "3:no checkpoint on the device (--device), or no record (without --device); "
                        + "shared: a blank COW or no such snapshot",
                "4:log failed validation (device untouched), or the record is corrupt; shared: the COW failed its check (nothing changed)",
                "6:permission denied",
                "7:invalid state (--force-roll-forward on a half-restored device; a daemon is running; the record says a commit was started)",
                "8:persistent: the COW's snapshot was not taken of --device (size or fingerprint differs); shared: the COW's store "
                        + "belongs to an origin of another size; nothing was changed"})
public final class RollbackCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Option(names = "--device", paramLabel = "PATH", description = "Raw block device or image file (persistent: the origin). Default: from the record.")
    Path device;

    @Option(names = "--mode", paramLabel = "bow|persistent|shared", description = "bow (default with --device), persistent or shared. Default: from the record.")
    String mode;

    @Option(names = "--cow", paramLabel = "PATH", description = "persistent and shared mode: the COW device. Default: from the record.")
    Path cow;

    @Option(names = "--snapshot", paramLabel = "ID|NAME",
            description = "shared mode: the snapshot the origin becomes. Default (from the record only): the checkpoint snapshot, "
                    + "which is then deleted, as 'bowctl rollback' of a running checkpoint does.")
    String snapshot;

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
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        boolean fromRecord = device == null;
        if (fromRecord) {
            if (mode != null || cow != null || snapshot != null) {
                err.println("bowctl: --mode, --cow and --snapshot go with --device (without --device they come from the record)");
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
        if (snapshot != null && !"shared".equals(mode)) {
            err.println("bowctl: --snapshot is for --mode shared");
            err.flush();
            return ExitCodes.USAGE;
        }
        int code;
        if ("shared".equals(mode)) {
            code = rollbackShared(out, err, fromRecord);
        } else if ("persistent".equals(mode)) {
            code = mergePersistent(out, err);
        } else if ("bow".equals(mode)) {
            if (cow != null) {
                err.println("bowctl: --cow is for --mode persistent");
                err.flush();
                return ExitCodes.USAGE;
            }
            code = restoreBow(out, err);
        } else {
            err.println("bowctl: unknown --mode " + mode + " (bow, persistent or shared)");
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

    private int rollbackShared(PrintWriter out, PrintWriter err, boolean fromRecord) {
        if (cow == null) {
            err.println("bowctl: --mode shared needs --cow PATH");
            err.flush();
            return ExitCodes.USAGE;
        }
        if (forceRollForward) {
            err.println("bowctl: --force-roll-forward is for bow mode");
            err.flush();
            return ExitCodes.USAGE;
        }
        String target = snapshot;
        boolean deleteAfter = false;
        if (target == null) {
            if (!fromRecord) {
                err.println("bowctl: --mode shared needs --snapshot ID|NAME");
                err.flush();
                return ExitCodes.USAGE;
            }
            target = SharedEngine.CHECKPOINT_NAME;   // the lifecycle's checkpoint, gone once rolled back
            deleteAfter = true;
        }
        try (BlockDevice origin = OfflineDevice.open(device, false); BlockDevice c = OfflineDevice.open(cow, false)) {
            return rollbackShared(origin, c, device.toString(), cow.toString(), target, deleteAfter, out, err, new ProgressLine(err));
        } catch (IOException e) {
            int code = OfflineDevice.report(err, device, e);
            err.println("bowctl: run the same command again to finish the rollback");
            err.flush();
            return code;
        }
    }

    /**
     * The shared-mode offline rollback on open devices (tests pass power-cut layers). Checks the
     * COW first and refuses, changing nothing, a COW with problems, of another origin, or without
     * the snapshot. The engine's rollback is idempotent chunk by chunk (each chunk becomes the
     * snapshot's data, copied out first for the snapshots still reading the origin there, and
     * that copy is committed before the origin is written), so an interrupted run is finished by
     * running it again.
     */
    static int rollbackShared(BlockDevice origin, BlockDevice cow, String originName, String cowName, String target, boolean deleteAfter,
                              PrintWriter out, PrintWriter err, ProgressLine progress) throws IOException {
        long start = System.nanoTime();
        SharedCheck.Result check = SharedCheck.run(cow);
        if (check.blank()) {
            err.println("bowctl: " + cowName + " is blank (no shared store): nothing to roll back");
            err.flush();
            return ExitCodes.NO_CHECKPOINT;
        }
        if (!check.clean()) {
            err.println("bowctl: " + cowName + " failed its check (" + check.problemCount() + " problem" + (check.problemCount() == 1 ? "" : "s")
                    + ", the first: " + check.problems().get(0) + "); nothing was changed. 'bowctl shared check --cow " + cowName + "' lists them");
            err.flush();
            return ExitCodes.LOG_INVALID;
        }
        SharedFormat.Header h = check.header();
        if (h.originBytes() != origin.size()) {
            err.println("bowctl: " + originName + " is not the origin of " + cowName + ": the store belongs to an origin of " + h.originBytes()
                    + " bytes, this one has " + origin.size() + "; nothing was changed");
            err.flush();
            return ExitCodes.WRONG_ORIGIN;
        }
        int id = snapshotId(h, target);
        if (id < 0) {
            err.println("bowctl: no snapshot " + target + " on " + cowName + " (live: " + (h.snapmask() == 0 ? "none" : SharedCheck.ids(h.snapmask())) + ")");
            err.flush();
            return ExitCodes.NO_CHECKPOINT;
        }
        String name = h.snapshot(id).name().isEmpty() ? "" : " (" + h.snapshot(id).name() + ")";
        long total;
        // try-with-resources: a close that fails after a failed rollback does not hide why the rollback failed
        try (SharedEngine engine = SharedEngine.open(origin, cow, new SharedEngine.Options(0))) {
            engine.rollbackTo(Integer.toString(id), deleteAfter);   // the delete is recorded with the rollback
            long chunkBytes = h.chunkBytes();
            long[] last = {0, 0};
            try {
                while ("ROLLING_BACK".equals(engine.status().state())) {
                    showProgress(engine, chunkBytes, progress, last);
                    try {
                        Thread.sleep(100);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        break;      // awaitRollback below still waits for the rollback to end
                    }
                }
                engine.awaitRollback();
                showProgress(engine, chunkBytes, progress, last);
            } finally {
                progress.clear();
            }
            total = last[1];
        } catch (RuntimeException e) {
            throw new IOException(e.getMessage(), e);
        }
        out.printf(Locale.ROOT, "rolled back %s to snapshot %d%s from %s: %d chunks in %.1f s%s%n", originName, id, name, cowName, total,
                (System.nanoTime() - start) / 1e9, deleteAfter ? "; the snapshot is deleted" : "");
        out.flush();
        return ExitCodes.OK;
    }

    /** Reads "done/total chunks" from the engine's status into {@code last} and shows it in bytes. */
    private static void showProgress(SharedEngine engine, long chunkBytes, ProgressLine progress, long[] last) {
        String p = engine.status().details().get("rollback");
        if (p == null) return;
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("(\\d+)/(\\d+) chunks").matcher(p);
        if (!m.matches()) return;
        last[0] = Long.parseLong(m.group(1));
        last[1] = Long.parseLong(m.group(2));
        progress.progress("rollback", last[0] * chunkBytes, last[1] * chunkBytes);
    }

    /** The live snapshot {@code idOrName} names (an ID is 1 or 2 digits; a name is never all digits), or -1. */
    static int snapshotId(SharedFormat.Header h, String idOrName) {
        if (idOrName.matches("\\d{1,2}")) {
            int id = Integer.parseInt(idOrName);
            return id < SharedFormat.MAX_SNAPSHOTS && h.snapshot(id) != null ? id : -1;
        }
        for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) {
            if (h.snapshot(i) != null && h.snapshot(i).name().equals(idOrName)) return i;
        }
        return -1;
    }

    private int restoreBow(PrintWriter out, PrintWriter err) {
        return restoreBow(device, yes, forceRollForward, out, err);
    }

    /** The bow-mode rollback of {@code device}. */
    static int restoreBow(Path device, boolean yes, boolean forceRollForward, PrintWriter out, PrintWriter err) {
        long start = System.nanoTime();
        try (BlockDevice dev = OfflineDevice.open(device, false)) {
            ProgressLine progress = new ProgressLine(err);
            Console console = System.console();
            if (console != null && !yes && !confirm(device, forceRollForward, dev, console, out, progress)) {
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
    private static boolean confirm(Path device, boolean forceRollForward, BlockDevice dev, Console console, PrintWriter out,
                                   ProgressLine progress) throws IOException {
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
