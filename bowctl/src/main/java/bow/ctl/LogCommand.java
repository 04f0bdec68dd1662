package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.restore.LogChain;
import bow.restore.LogInspector;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code bowctl log verify|dump}: read-only looks at a bow-mode checkpoint log on the raw device. */
@Command(name = "log", mixinStandardHelpOptions = true,
        description = "Inspect the bow-mode checkpoint log on a raw device or image (read-only, no daemon).",
        subcommands = {LogCommand.Verify.class, LogCommand.Dump.class})
public final class LogCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Override
    public Integer call() {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing subcommand: verify or dump");
    }

    @Command(name = "verify", mixinStandardHelpOptions = true,
            description = "Run the rollback's validation alone (every header, every checksum), writing nothing.",
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:the log is valid", "1:I/O or other failure", "2:usage error",
                    "3:no checkpoint on the device", "4:log failed validation", "6:permission denied"})
    static final class Verify implements Callable<Integer> {
        @Spec CommandSpec spec;

        @Option(names = "--device", required = true, paramLabel = "PATH", description = "Raw block device or image file.")
        Path device;

        @Override
        public Integer call() {
            return run(spec.commandLine().getOut(), spec.commandLine().getErr());
        }

        /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
        int run(PrintWriter out, PrintWriter err) {
            try (BlockDevice dev = OfflineDevice.openForInspection(device)) {
                ProgressLine progress = new ProgressLine(err);
                LogChain.Summary s;
                try {
                    s = LogInspector.verify(dev, device.toString(), progress);
                } finally {
                    progress.clear();
                }
                out.println("OK: " + LogInspector.totals(s));
                out.flush();
                return ExitCodes.OK;
            } catch (IOException e) {
                return OfflineDevice.report(err, device, e);
            }
        }
    }

    @Command(name = "dump", mixinStandardHelpOptions = true,
            description = "Print every log sequence's header and entries, newest sequence first.",
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:dumped, the log is valid", "1:I/O or other failure", "2:usage error",
                    "3:no checkpoint on the device", "4:dumped up to the point where validation failed",
                    "6:permission denied"})
    static final class Dump implements Callable<Integer> {
        @Spec CommandSpec spec;

        @Option(names = "--device", required = true, paramLabel = "PATH", description = "Raw block device or image file.")
        Path device;

        @Option(names = "--json", description = "One JSON object instead of text.")
        boolean json;

        @Override
        public Integer call() {
            PrintWriter out = spec.commandLine().getOut();
            PrintWriter err = spec.commandLine().getErr();
            try (BlockDevice dev = OfflineDevice.openForInspection(device)) {
                LogInspector.Dump d = LogInspector.dump(dev, device.toString());
                out.print(json ? LogInspector.toJson(d) + "\n" : LogInspector.toText(d));
                out.flush();
                if (!d.valid()) {
                    err.println("bowctl: log failed validation: " + d.error());
                    err.flush();
                    return ExitCodes.LOG_INVALID;
                }
                return ExitCodes.OK;
            } catch (IOException e) {
                return OfflineDevice.report(err, device, e);
            }
        }
    }
}
