package bow.ctl;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** {@code bowctl}: the control client of bowd, and the offline tools that need no daemon. */
@Command(name = "bowctl", mixinStandardHelpOptions = true, versionProvider = bow.daemon.BowVersion.class,
        description = {"Control bowd and work on checkpointed devices offline.",
                "Online commands talk to the daemon's control socket (--control PATH); offline commands take --device PATH."},
        subcommands = {StatusCommand.class, CheckpointCommand.class, CommitCommand.class, RangesCommand.class,
                TrimCommand.class, ShutdownCommand.class, RollbackCommand.class, LogCommand.class,
                BootAttemptCommand.class, NeedsCheckpointCommand.class, NeedsRollbackCommand.class, NeedsCommitCommand.class, AbortCommand.class,
                SupportsCommand.class, SnapshotCommand.class, SharedCommand.class},
        exitCodeListHeading = "%nExit codes (all commands):%n",
        exitCodeList = {"0:success", "1:I/O or other failure", "2:usage error", "3:no checkpoint on the device",
                "4:log failed validation (device untouched), or the checkpoint record is corrupt", "5:daemon not reachable", "6:permission denied",
                "7:invalid state for the request"})
public final class Bowctl implements Runnable {
    @Spec CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing command");
    }

    public static CommandLine commandLine() {
        return new CommandLine(new Bowctl());
    }

    public static void main(String[] args) {
        Integer fast = FastPath.tryRun(args);
        if (fast != null) System.exit(fast);
        System.exit(commandLine().execute(args));
    }
}
