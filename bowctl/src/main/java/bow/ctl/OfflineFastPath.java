package bow.ctl;

import java.io.PrintWriter;
import java.nio.file.Path;

/**
 * {@code log verify --device PATH} and {@code rollback --device PATH [--mode bow] [-y|--yes]
 * [--force-roll-forward]} without building picocli's model of every command: that model cost
 * about 0.4 s of CPU per call on the project's VM (0.05 s for a call that skips it), as much as
 * checksumming a GiB. The same code runs ({@link LogCommand.Verify#run},
 * {@link RollbackCommand#restoreBow}), with the same output and exit codes; any other argument
 * list (help, another mode, an option given twice, a typo) goes through picocli as usual.
 */
final class OfflineFastPath {
    private OfflineFastPath() {}

    /** The exit code, or null when the arguments are not for this path. */
    static Integer tryRun(String[] args, PrintWriter out, PrintWriter err) {
        if (args.length >= 3 && args[0].equals("log") && args[1].equals("verify")) {
            Path device = null;
            for (int i = 2; i < args.length; i++) {
                String v = deviceValue(args, i);
                if (v == null || device != null) return null;
                device = Path.of(v);
                if (!args[i].contains("=")) i++;
            }
            return device == null ? null : LogCommand.Verify.run(device, out, err);
        }
        if (args.length >= 2 && args[0].equals("rollback")) {
            Path device = null;
            boolean yes = false, force = false, mode = false;
            for (int i = 1; i < args.length; i++) {
                String a = args[i];
                if ((a.equals("-y") || a.equals("--yes")) && !yes) {
                    yes = true;
                } else if (a.equals("--force-roll-forward") && !force) {
                    force = true;
                } else if ((a.equals("--mode=bow") || a.equals("--mode") && i + 1 < args.length && args[i + 1].equals("bow")) && !mode) {
                    mode = true;
                    if (a.equals("--mode")) i++;
                } else {
                    String v = deviceValue(args, i);
                    if (v == null || device != null) return null;
                    device = Path.of(v);
                    if (!a.contains("=")) i++;
                }
            }
            return device == null ? null : RollbackCommand.restoreBow(device, yes, force, out, err);
        }
        return null;
    }

    /** The value of a {@code --device PATH} or {@code --device=PATH} at {@code args[i]}, or null. */
    private static String deviceValue(String[] args, int i) {
        String a = args[i];
        String v = null;
        if (a.startsWith("--device=")) v = a.substring(9);
        else if (a.equals("--device") && i + 1 < args.length) v = args[i + 1];
        return v == null || v.isEmpty() || v.startsWith("-") ? null : v;
    }
}
