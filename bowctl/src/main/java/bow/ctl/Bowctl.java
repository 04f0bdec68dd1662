package bow.ctl;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** Minimal entry point for the offline tools; the full bowctl main registers the same command classes. */
@Command(name = "bowctl", mixinStandardHelpOptions = true,
        description = "Control bowd and work on checkpointed devices offline.",
        subcommands = {RollbackCommand.class, LogCommand.class})
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
        System.exit(commandLine().execute(args));
    }
}
