package bow.ctl;

import bow.proto.Range;
import bow.proto.RangesReply;
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
        description = {"Print the daemon's range table: every run of blocks with its type "
                + "(Sector0, Sector0_current, Unchanged, Free, Changed, Backup), in bytes.",
                "The table is fetched in pages (any number of ranges); if it changes meanwhile, each page shows it as it was when "
                        + "that page was read, and a range may be split where two pages meet."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:ok", "1:failure", "5:daemon not reachable", "6:permission denied"})
public final class RangesCommand implements Callable<Integer> {
    /** Ranges asked for per request; the daemon may send fewer. */
    static final int PAGE = 16384;

    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--json", description = "Print a JSON array of {offset, length, type}.")
    boolean json;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        StringBuilder b = new StringBuilder();
        if (json) b.append('['); else b.append(String.format("%-16s %-16s %s%n", "offset", "length", "type"));
        long from = 0;
        boolean first = true;
        while (true) {
            int[] code = {0};
            Response r = control.call(Request.newBuilder().setRanges(RangesRequest.newBuilder().setFromOffset(from).setLimit(PAGE)).build(), err, code);
            if (r == null || code[0] != 0) {
                out.flush();
                return code[0] == 0 ? ExitCodes.FAILURE : code[0];
            }
            RangesReply page = r.getRanges();
            for (Range x : page.getRangesList()) {
                if (json) {
                    if (!first) b.append(',');
                    b.append("{\"offset\":").append(x.getOffset()).append(",\"length\":").append(x.getLength())
                            .append(",\"type\":").append(Json.quote(x.getType())).append('}');
                } else {
                    b.append(String.format("%-16d %-16d %s%n", x.getOffset(), x.getLength(), x.getType()));
                }
                first = false;
            }
            out.print(b);   // page by page: millions of ranges are never all in memory
            b.setLength(0);
            if (!page.getMore()) break;   // the last page (or a daemon that sends the whole table at once)
            if (page.getNextOffset() <= from) {
                err.println("bowctl: the daemon's range pages do not advance (next offset " + page.getNextOffset() + " after " + from + ")");
                err.flush();
                return ExitCodes.FAILURE;
            }
            from = page.getNextOffset();
        }
        if (json) out.println("]");
        out.flush();
        return ExitCodes.OK;
    }
}
