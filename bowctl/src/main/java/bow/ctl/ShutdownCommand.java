package bow.ctl;

import bow.proto.Request;
import bow.proto.Response;
import bow.proto.ShutdownRequest;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.concurrent.Callable;

/** {@code bowctl shutdown}: stop the daemon cleanly (in-flight requests finish, everything is flushed). */
@Command(name = "shutdown", mixinStandardHelpOptions = true,
        description = "Stop the daemon cleanly: in-flight requests finish and everything is flushed. A running checkpoint stays on the device.",
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:the daemon is stopping", "5:daemon not reachable", "6:permission denied"})
public final class ShutdownCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        int[] code = {0};
        Response r = control.call(Request.newBuilder().setShutdown(ShutdownRequest.getDefaultInstance()).build(), err, code);
        if (r != null && code[0] == 0) out.println(r.getMessage());
        out.flush();
        return code[0];
    }
}
