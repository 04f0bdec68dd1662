package bow.ctl;

import bow.lifecycle.CheckpointRecord;

import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The commands that scripts run often (the init scripts several times per boot, the benchmark
 * dozens of times per run), without picocli: building picocli's model costs most of a call's
 * start-up (its classes are Java 5 bytecode, which the class-data archive cannot hold, and its
 * set-up reflects over every annotation). The plain forms of these commands are parsed here and
 * run through the same {@code run(out, err)} as under picocli, so output and exit codes are the
 * same; anything else (--help, --version, an unknown or repeated option, a missing value, a value
 * or argument that starts with '-' or '@', a number that is not plain decimal) returns null and
 * goes through picocli as usual, which answers it or prints the usage error.
 */
final class FastPath {
    private FastPath() {}

    /** The exit code, or null when the arguments are not for the fast path. */
    static Integer tryRun(String[] args) {
        return tryRun(args, new PrintWriter(new java.io.OutputStreamWriter(System.out, StandardCharsets.UTF_8), true),
                new PrintWriter(new java.io.OutputStreamWriter(System.err, StandardCharsets.UTF_8), true));
    }

    static Integer tryRun(String[] args, PrintWriter out, PrintWriter err) {
        if (args.length == 0) return null;
        if (args[0].equals("needs-checkpoint")) return needsCheckpoint(args, out, err);
        Args a;
        switch (args[0]) {
            case "status": {
                if ((a = Args.parse(args, 1, 0, 0, "--json", "--control")) == null) return null;
                StatusCommand c = new StatusCommand();
                c.control = a.control();
                c.json = a.flag("--json");
                return c.run(out, err);
            }
            case "shutdown": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--control")) == null) return null;
                ShutdownCommand c = new ShutdownCommand();
                c.control = a.control();
                return c.run(out, err);
            }
            case "trim": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--control", "--offset", "--length")) == null) return null;
                Long offset = a.number("--offset", 18), length = a.number("--length", 18);
                if (offset == null || length == null) return null;   // required: picocli says so
                TrimCommand c = new TrimCommand();
                c.control = a.control();
                c.offset = offset;
                c.length = length;
                return c.run(out, err);
            }
            case "commit": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--control", "--device", "--record")) == null) return null;
                CommitCommand c = new CommitCommand();
                c.control = a.control();
                c.device = a.path("--device");
                c.record = a.record();
                return c.run(out, err);
            }
            case "checkpoint": {
                if (args.length < 2 || !args[1].equals("start")) return null;
                if ((a = Args.parse(args, 2, 0, 0, null, "--control", "--fitrim", "--retries", "--reason", "--record")) == null) return null;
                CheckpointCommand.Start c = new CheckpointCommand.Start();
                if (a.has("--retries")) {
                    Long retries = a.number("--retries", 9);   // -1 goes through picocli
                    if (retries == null) return null;
                    c.retries = retries.intValue();
                }
                c.control = a.control();
                c.fitrim = a.path("--fitrim");
                c.reason = a.value("--reason", "");
                c.record = a.record();
                return c.run(out, err);
            }
            case "snapshot": {
                if (args.length < 2) return null;
                switch (args[1]) {
                    case "create": {
                        if ((a = Args.parse(args, 2, 0, Integer.MAX_VALUE, "--json --writable", "--control", "--name")) == null) return null;
                        SnapshotCommand.Create c = new SnapshotCommand.Create();
                        c.control = a.control();
                        c.name = a.value("--name", null);
                        c.names = a.positional.isEmpty() ? null : a.positional;
                        c.writable = a.flag("--writable");
                        c.json = a.flag("--json");
                        return c.run(out, err);
                    }
                    case "list": {
                        if ((a = Args.parse(args, 2, 0, 0, "--json", "--control")) == null) return null;
                        SnapshotCommand.ListSnapshots c = new SnapshotCommand.ListSnapshots();
                        c.control = a.control();
                        c.json = a.flag("--json");
                        return c.run(out, err);
                    }
                    case "delete": {
                        if ((a = Args.parse(args, 2, 1, 1, null, "--control")) == null) return null;
                        SnapshotCommand.Delete c = new SnapshotCommand.Delete();
                        c.control = a.control();
                        c.snapshot = a.positional.get(0);
                        return c.run(out, err);
                    }
                    default:
                        return null;
                }
            }
            case "log": {
                if (args.length < 2 || !args[1].equals("verify")) return null;
                if ((a = Args.parse(args, 2, 0, 0, null, "--device")) == null || !a.has("--device")) return null;
                LogCommand.Verify c = new LogCommand.Verify();
                c.device = a.path("--device");
                return c.run(out, err);
            }
            case "rollback": {
                a = Args.parse(args, 1, 0, 0, "--force-roll-forward -y --yes", "--device", "--mode", "--cow", "--snapshot", "--control", "--record");
                if (a == null || a.flag("-y") && a.flag("--yes")) return null;   // the same option twice: picocli's error
                RollbackCommand c = new RollbackCommand();
                c.record = a.record();
                c.device = a.path("--device");
                c.mode = a.value("--mode", null);
                c.cow = a.path("--cow");
                c.snapshot = a.value("--snapshot", null);
                c.control = a.path("--control");
                c.forceRollForward = a.flag("--force-roll-forward");
                c.yes = a.flag("-y") || a.flag("--yes");
                return c.run(out, err);
            }
            case "needs-rollback": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--record")) == null) return null;
                NeedsRollbackCommand c = new NeedsRollbackCommand();
                c.record = a.record();
                return c.run(out, err);
            }
            case "needs-commit": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--record", "--device")) == null) return null;
                NeedsCommitCommand c = new NeedsCommitCommand();
                c.record = a.record();
                c.device = a.path("--device");
                return c.run(out, err);
            }
            case "boot-attempt": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--record")) == null) return null;
                BootAttemptCommand c = new BootAttemptCommand();
                c.record = a.record();
                return c.run(out, err);
            }
            case "abort": {
                if ((a = Args.parse(args, 1, 0, 0, "--retry", "--record", "--reason")) == null) return null;
                AbortCommand c = new AbortCommand();
                c.record = a.record();
                c.retry = a.flag("--retry");
                c.reason = a.value("--reason", "");
                return c.run(out, err);
            }
            case "supports": {
                if ((a = Args.parse(args, 1, 0, 0, null, "--record")) == null) return null;
                SupportsCommand c = new SupportsCommand();
                c.record = a.record();
                return c.run(out, err);
            }
            default:
                return null;
        }
    }

    /** The options and arguments of one command line, as picocli would read them in the plain cases. */
    static final class Args {
        final Map<String, String> values = new HashMap<>();
        final List<String> flags = new ArrayList<>();
        final List<String> positional = new ArrayList<>();

        /**
         * args[from..] with these flags (space-separated, or null) and options taking a value; null
         * unless every argument is one of them used once (--opt VALUE or --opt=VALUE) or one of
         * minArgs..maxArgs positional arguments.
         */
        static Args parse(String[] args, int from, int minArgs, int maxArgs, String flagNames, String... valued) {
            Args a = new Args();
            for (int i = from; i < args.length; i++) {
                String s = args[i];
                if (s.startsWith("@")) return null;   // picocli reads @FILE as more arguments
                if (!s.startsWith("-")) {
                    a.positional.add(s);
                    continue;
                }
                String opt = s, value = null;
                int eq = s.indexOf('=');
                if (eq > 0) {
                    opt = s.substring(0, eq);
                    value = s.substring(eq + 1);
                    if (value.isEmpty()) return null;
                }
                if (value == null && flagNames != null && isOneOf(opt, flagNames)) {
                    if (a.flags.contains(opt)) return null;
                    a.flags.add(opt);
                    continue;
                }
                if (!contains(valued, opt) || a.values.containsKey(opt)) return null;
                if (value == null) {
                    if (++i == args.length) return null;
                    value = args[i];
                }
                if (value.startsWith("-") || value.startsWith("@")) return null;
                a.values.put(opt, value);
            }
            int n = a.positional.size();
            return n < minArgs || n > maxArgs ? null : a;
        }

        private static boolean isOneOf(String opt, String names) {
            for (String n : names.split(" ")) if (n.equals(opt)) return true;
            return false;
        }

        private static boolean contains(String[] names, String opt) {
            for (String n : names) if (n.equals(opt)) return true;
            return false;
        }

        boolean flag(String name) { return flags.contains(name); }

        boolean has(String name) { return values.containsKey(name); }

        String value(String name, String otherwise) { return values.getOrDefault(name, otherwise); }

        Path path(String name) {
            String v = values.get(name);
            return v == null ? null : Path.of(v);
        }

        /** A plain decimal of at most maxDigits digits; null if the option is missing or the value is another form. */
        Long number(String name, int maxDigits) {
            String v = values.get(name);
            if (v == null || v.isEmpty() || v.length() > maxDigits || v.length() > 1 && v.charAt(0) == '0') return null;
            for (int i = 0; i < v.length(); i++) if (v.charAt(i) < '0' || v.charAt(i) > '9') return null;
            return Long.parseLong(v);
        }

        ControlOptions control() {
            ControlOptions c = new ControlOptions();
            c.control = path("--control");
            return c;
        }

        RecordOption record() {
            RecordOption r = new RecordOption();
            r.record = path("--record");
            return r;
        }
    }

    /** needs-checkpoint [--record PATH]: the same output and exit codes as {@link NeedsCheckpointCommand}. */
    private static Integer needsCheckpoint(String[] args, PrintWriter out, PrintWriter err) {
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
