package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.proto.CommitRequest;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.StatusRequest;
import bow.lifecycle.CheckpointRecord;
import java.util.Optional;
import bow.restore.OfflineCommit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code bowctl commit}: keep the changes, drop the checkpoint; online, or offline with --device. */
@Command(name = "commit", mixinStandardHelpOptions = true,
        description = {"Keep every change made since the checkpoint started and drop the checkpoint.",
                "Without --device the running daemon commits; with --device PATH the checkpointed device is committed offline (bow mode, no daemon).",
                "The checkpoint record (--record, $BOW_RECORD, /var/lib/bow/checkpoint.rec), if any, is removed after a successful commit. "
                        + "A record that requests a rollback (bowctl abort, low-space abort) makes commit refuse (exit 7): that checkpoint must be rolled back. "
                        + "If the daemon has no checkpoint running (it was committed already, or never started) a leftover record is removed and the exit is 0."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:committed", "1:failure", "3:no checkpoint on the device (--device)", "4:log header invalid (--device), or the record is corrupt",
                "5:daemon not reachable", "6:permission denied",
                "7:invalid state (no checkpoint running, a rollback is half done, or the record requests a rollback)"})
public final class CommitCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--device", paramLabel = "PATH", description = "Commit this raw device or image offline instead of asking the daemon.")
    Path device;

    @Mixin RecordOption record;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Optional<CheckpointRecord> rec;
        try {
            rec = record.read(err);
        } catch (RecordOption.Failed f) {
            return f.code;
        }
        if (rec.isPresent() && rec.get().state() == CheckpointRecord.State.ROLLBACK_REQUESTED
                && (device == null || sameDevice(rec.get()))) {
            err.println("bowctl: refusing to commit: the checkpoint record " + record.path() + " requests a rollback ("
                    + BootAttemptCommand.why(rec.get()) + "); run bowctl rollback");
            err.flush();
            return ExitCodes.INVALID_STATE;
        }
        int code;
        if (device != null) {
            try (BlockDevice dev = OfflineDevice.open(device, false)) {
                OfflineCommit.commit(dev, device.toString());
                out.println("committed " + device + ": the live block 0 is back and the device is a plain image");
                code = ExitCodes.OK;
            } catch (IOException e) {
                code = OfflineDevice.report(err, device, e);
            }
            if (code == ExitCodes.NO_CHECKPOINT && rec.isPresent() && sameDevice(rec.get())) code = ExitCodes.OK;
            if (rec.isPresent() && !sameDevice(rec.get())) rec = Optional.empty();   // another device's record stays
        } else {
            int[] c = {0};
            Response r = control.call(Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build(), err, c);
            code = c[0];
            if (r != null && code == 0) out.println(r.getMessage());
            if (code == ExitCodes.INVALID_STATE && rec.isPresent() && !checkpointRunning(err)) {
                out.println("the daemon has no checkpoint running: the record is left over (committed already, or never started)");
                code = ExitCodes.OK;
            }
        }
        if (rec.isPresent()) code = record.removeAfter(code, out, err);
        out.flush();
        return code;
    }

    private boolean sameDevice(CheckpointRecord r) {
        return Path.of(r.device()).toAbsolutePath().normalize().equals(device.toAbsolutePath().normalize());
    }

    /** True unless the daemon says it is in a state with nothing to commit (before a checkpoint, or committed). */
    private boolean checkpointRunning(PrintWriter err) {
        int[] c = {0};
        Response r = control.call(Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build(), err, c);
        if (r == null || c[0] != 0) return true;
        String state = r.getStatus().getState();
        return !(state.equals("0 TRIM") || state.equals("2 COMMITTED") || state.equals("NO_SNAPSHOT"));
    }
}
