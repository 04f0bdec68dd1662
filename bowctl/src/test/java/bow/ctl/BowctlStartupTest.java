package bow.ctl;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/** bowctl builds picocli's model of the named command only, with the same answers as the whole tree. */
class BowctlStartupTest {
    @TempDir Path dir;

    @Test
    void commandNamesAreTheAnnotations() {
        assertEquals(16, Bowctl.COMMANDS.size());
        Bowctl.COMMANDS.forEach((name, c) -> assertEquals(c.getAnnotation(Command.class).name(), name, c.getName()));
        assertEquals(List.of("status", "checkpoint", "commit"), List.copyOf(Bowctl.COMMANDS.keySet()).subList(0, 3), "usage order");
    }

    @Test
    void onlyTheNamedCommandIsBuilt() {
        assertEquals(Set.of("status"), Bowctl.commandLine(new String[] {"status", "--json"}).getSubcommands().keySet());
        assertEquals(Set.of("snapshot"), Bowctl.commandLine(new String[] {"snapshot", "list"}).getSubcommands().keySet());
        assertEquals(Set.of("create", "list", "delete", "rollback"),
                Bowctl.commandLine(new String[] {"snapshot", "list"}).getSubcommands().get("snapshot").getSubcommands().keySet());
        for (String[] args : new String[][] {{}, {"--help"}, {"--version"}, {"stat"}}) {
            assertEquals(Bowctl.COMMANDS.keySet(), Bowctl.commandLine(args).getSubcommands().keySet(), String.join(" ", args));
        }
    }

    private static OfflineCommandsTest.Run run(CommandLine cl, String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        return new OfflineCommandsTest.Run(cl.execute(args), out.toString(), err.toString());
    }

    @Test
    void answersLikeTheWholeTree() {
        String none = dir.resolve("none.sock").toString();
        for (String[] args : new String[][] {{"status", "--jsn"}, {"status", "--control", none}, {"snapshot"}, {"snapshot", "list", "x"},
                {"snapshot", "create", "--help"}, {"log", "verify"}, {"ranges", "--control", none}, {"checkpoint", "start", "--retries", "-2"},
                {"trim", "--offset", "0x1000", "--length", "4096", "--control", none}, {"status", "--help"}, {"stat"}, {}}) {
            OfflineCommandsTest.Run lazy = run(Bowctl.commandLine(args), args), whole = run(Bowctl.commandLine(), args);
            String what = String.join(" ", args);
            assertEquals(whole.code(), lazy.code(), "exit code of " + what);
            assertEquals(whole.out(), lazy.out(), "stdout of " + what);
            assertEquals(whole.err(), lazy.err(), "stderr of " + what);
        }
        assertEquals(ExitCodes.USAGE, run(Bowctl.commandLine(new String[] {"status", "--jsn"}), "status", "--jsn").code());
        assertTrue(run(Bowctl.commandLine(new String[] {"stat"}), "stat").err().contains("Did you mean"), "suggestions from the whole tree");
    }
}
