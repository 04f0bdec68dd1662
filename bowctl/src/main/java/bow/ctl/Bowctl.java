package bow.ctl;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.util.LinkedHashMap;
import java.util.Map;

/** {@code bowctl}: the control client of bowd, and the offline tools that need no daemon. */
@Command(name = "bowctl", mixinStandardHelpOptions = true, versionProvider = bow.daemon.BowVersion.class,
        description = {"Control bowd and work on checkpointed devices offline.",
                "Online commands talk to the daemon's control socket (--control PATH); offline commands take --device PATH."},
        exitCodeListHeading = "%nExit codes (all commands):%n",
        exitCodeList = {"0:success", "1:I/O or other failure", "2:usage error", "3:no checkpoint on the device",
                "4:log failed validation (device untouched), or the checkpoint record is corrupt", "5:daemon not reachable", "6:permission denied",
                "7:invalid state for the request"})
public final class Bowctl implements Runnable {
    @Spec CommandSpec spec;

    /**
     * The commands, in the order of the usage text. Not in the annotation: picocli would build the
     * model of every one of them (annotation reflection over some 30 classes, most of a call's start-up
     * time) where one call runs one.
     */
    static final Map<String, Class<?>> COMMANDS = new LinkedHashMap<>();

    static {
        // The names are the annotations' (BowctlStartupTest checks): reading the annotations here
        // would cost the reflection this map saves.
        COMMANDS.put("status", StatusCommand.class);
        COMMANDS.put("checkpoint", CheckpointCommand.class);
        COMMANDS.put("commit", CommitCommand.class);
        COMMANDS.put("ranges", RangesCommand.class);
        COMMANDS.put("trim", TrimCommand.class);
        COMMANDS.put("shutdown", ShutdownCommand.class);
        COMMANDS.put("rollback", RollbackCommand.class);
        COMMANDS.put("log", LogCommand.class);
        COMMANDS.put("boot-attempt", BootAttemptCommand.class);
        COMMANDS.put("needs-checkpoint", NeedsCheckpointCommand.class);
        COMMANDS.put("needs-rollback", NeedsRollbackCommand.class);
        COMMANDS.put("needs-commit", NeedsCommitCommand.class);
        COMMANDS.put("abort", AbortCommand.class);
        COMMANDS.put("supports", SupportsCommand.class);
        COMMANDS.put("snapshot", SnapshotCommand.class);
        COMMANDS.put("shared", SharedCommand.class);
    }

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing command");
    }

    /** bowctl with every command (for its usage text, or to run any arguments). */
    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Bowctl());
        COMMANDS.forEach(cl::addSubcommand);
        return cl;
    }

    /**
     * bowctl for these arguments: when the first one names a command, only that command is built
     * (the same parse, output and exit codes as {@link #commandLine()}, at a fraction of the start-up);
     * otherwise (no command, --help, --version, a typo) all of them, for the usage text and suggestions.
     */
    public static CommandLine commandLine(String[] args) {
        Class<?> only = args.length == 0 ? null : COMMANDS.get(args[0]);
        if (only == null) return commandLine();
        CommandLine cl = new CommandLine(new Bowctl());
        cl.addSubcommand(args[0], only);
        return cl;
    }

    /** Runs the arguments through picocli; returns the exit code. */
    static int run(String[] args) {
        return commandLine(args).execute(args);
    }

    public static void main(String[] args) {
        Integer fast = FastPath.tryRun(args);
        System.exit(fast != null ? fast : run(args));
    }
}
