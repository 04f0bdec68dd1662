package bow.ctl;

import bow.lifecycle.CheckpointRecord;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Optional;

/**
 * {@code needs-checkpoint}, which the init scripts run several times per boot, without
 * building picocli's model of every command (most of a call's start-up time): plain
 * {@code needs-checkpoint [--record PATH]} is answered here with the same output and exit
 * codes as {@link NeedsCheckpointCommand}; anything else (--help, unknown options) goes
 * through picocli as usual.
 */
final class FastPath {
    private FastPath() {}

    /** The exit code, or null when the arguments are not for the fast path. */
    static Integer tryRun(String[] args) {
        return tryRun(args, new PrintWriter(new java.io.OutputStreamWriter(System.out, StandardCharsets.UTF_8), true),
                new PrintWriter(new java.io.OutputStreamWriter(System.err, StandardCharsets.UTF_8), true));
    }

    static Integer tryRun(String[] args, PrintWriter out, PrintWriter err) {
        Integer offline = OfflineFastPath.tryRun(args, out, err);
        if (offline != null) return offline;
        if (args.length == 0 || !args[0].equals("needs-checkpoint")) return null;
        Path record = null;
        if (args.length == 2 && args[1].startsWith("--record=") && args[1].length() > 9) {
            record = Path.of(args[1].substring(9));
        } else if (args.length == 3 && args[1].equals("--record") && !args[2].startsWith("-")) {
            record = Path.of(args[2]);
        } else if (args.length != 1) {
            return null;
        }
        RecordOption opt = new RecordOption();
        opt.record = record;
        try {
            Optional<CheckpointRecord> r = opt.read(err);
            if (r.isEmpty()) {
                // StringBuilder, not "+": an indy string concatenation costs milliseconds of start-up.
                out.println(new StringBuilder("no checkpoint (no record at ").append(opt.path()).append(')').toString());
                out.flush();
                return 1;
            }
            out.println(NeedsCheckpointCommand.summary(r.get()));
            out.flush();
            return ExitCodes.OK;
        } catch (RecordOption.Failed f) {
            return f.code;
        }
    }
}
