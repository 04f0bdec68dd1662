package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.proto.CommitRequest;
import bow.proto.Request;
import bow.proto.Response;
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
                "Without --device the running daemon commits; with --device PATH the checkpointed device is committed offline (bow mode, no daemon)."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:committed", "1:failure", "3:no checkpoint on the device (--device)", "4:log header invalid (--device)",
                "5:daemon not reachable", "6:permission denied", "7:invalid state (no checkpoint running, or a rollback is half done)"})
public final class CommitCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--device", paramLabel = "PATH", description = "Commit this raw device or image offline instead of asking the daemon.")
    Path device;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (device != null) {
            try (BlockDevice dev = OfflineDevice.open(device, false)) {
                OfflineCommit.commit(dev, device.toString());
                out.println("committed " + device + ": the live block 0 is back and the device is a plain image");
                out.flush();
                return ExitCodes.OK;
            } catch (IOException e) {
                return OfflineDevice.report(err, device, e);
            }
        }
        int[] code = {0};
        Response r = control.call(Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build(), err, code);
        if (r != null && code[0] == 0) out.println(r.getMessage());
        out.flush();
        return code[0];
    }
}
