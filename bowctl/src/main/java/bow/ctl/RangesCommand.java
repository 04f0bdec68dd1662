package bow.ctl;

import bow.proto.Range;
import bow.proto.RangesRequest;
import bow.proto.Request;
import bow.proto.Response;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.concurrent.Callable;

/** {@code bowctl ranges}: the range table, like dm-bow's table status. */
@Command(name = "ranges", mixinStandardHelpOptions = true,
        description = "Print the daemon's range table: every run of blocks with its type "
                + "(Sector0, Sector0_current, Unchanged, Free, Changed, Backup), in bytes.",
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:ok", "1:failure", "5:daemon not reachable", "6:permission denied"})
public final class RangesCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--json", description = "Print a JSON array of {offset, length, type}.")
    boolean json;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        int[] code = {0};
        Response r = control.call(Request.newBuilder().setRanges(RangesRequest.getDefaultInstance()).build(),
                spec.commandLine().getErr(), code);
        if (r == null || code[0] != 0) return code[0];
        if (json) {
            StringBuilder b = new StringBuilder("[");
            for (int i = 0; i < r.getRanges().getRangesCount(); i++) {
                Range x = r.getRanges().getRanges(i);
                if (i > 0) b.append(',');
                b.append("{\"offset\":").append(x.getOffset()).append(",\"length\":").append(x.getLength())
                        .append(",\"type\":").append(Json.quote(x.getType())).append('}');
            }
            out.println(b.append(']'));
        } else {
            out.printf("%-16s %-16s %s%n", "offset", "length", "type");
            for (Range x : r.getRanges().getRangesList()) {
                out.printf("%-16d %-16d %s%n", x.getOffset(), x.getLength(), x.getType());
            }
        }
        out.flush();
        return ExitCodes.OK;
    }
}
