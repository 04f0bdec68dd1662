package bow.ctl;

import bow.proto.Request;
import bow.proto.Response;
import bow.proto.TrimRequest;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.concurrent.Callable;

/** {@code bowctl trim}: mark a byte range free, for devices with no mounted filesystem to run fstrim on. */
@Command(name = "trim", mixinStandardHelpOptions = true,
        description = {"Discard a byte range of the served device. Before a checkpoint (bow mode, state 0) this tells the "
                + "daemon the range is free space it may use for backups. Offset and length must be multiples of 512."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:trimmed", "1:failure", "2:bad range", "5:daemon not reachable", "6:permission denied"})
public final class TrimCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--offset", required = true, paramLabel = "BYTES", description = "Start of the range.")
    long offset;

    @Option(names = "--length", required = true, paramLabel = "BYTES", description = "Length of the range.")
    long length;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        int[] code = {0};
        Response r = control.call(Request.newBuilder().setTrim(TrimRequest.newBuilder().setOffset(offset).setLength(length)).build(), err, code);
        if (r != null && code[0] == 0) out.println(r.getMessage());
        out.flush();
        return code[0];
    }
}
