package bow.ctl;

import bow.proto.Request;
import bow.proto.Response;
import bow.proto.StatusReply;
import bow.proto.StatusRequest;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code bowctl status}: what the daemon is doing. */
@Command(name = "status", mixinStandardHelpOptions = true,
        description = "Show the daemon's mode, state, device, free space for backups, log position and NBD connections.",
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:ok", "1:failure", "5:daemon not reachable", "6:permission denied"})
public final class StatusCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--json", description = "Print one JSON object instead of a table.")
    boolean json;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        int[] code = {0};
        Response r = control.call(Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build(), err, code);
        if (r == null || code[0] != 0) return code[0];
        StatusReply s = r.getStatus();
        Map<String, Object> f = new LinkedHashMap<>();
        f.put("mode", s.getMode());
        f.put("state", s.getState());
        f.put("device", s.getDevice());
        f.put("size", s.getSize());
        f.put("block_size", s.getBlockSize());
        f.put("free_bytes", s.getFreeBytes());
        f.put("backed_up_bytes", s.getBackedUpBytes());
        f.put("log_sequence", s.getLogSequence());
        f.put("log_entries", s.getLogEntries());
        f.put("range_count", s.getRangeCount());
        f.put("nbd_connections", s.getNbdConnections());
        if (json) {
            f.put("details", new java.util.TreeMap<>(s.getDetailsMap()));
            out.println(Json.object(f));
        } else {
            // What printf("%-18s %s%n") printed, without loading java.util.Formatter (a call's start-up).
            StringBuilder b = new StringBuilder();
            f.forEach((k, v) -> row(b, k, v));
            new java.util.TreeMap<>(s.getDetailsMap()).forEach((k, v) -> row(b, k, v));
            out.print(b);
        }
        out.flush();
        return ExitCodes.OK;
    }

    private static void row(StringBuilder b, String key, Object value) {
        b.append(key);
        for (int i = key.length(); i < 18; i++) b.append(' ');
        b.append(' ').append(value).append(System.lineSeparator());
    }
}
