package bow.ctl;

import bow.proto.Request;
import bow.proto.Response;
import bow.proto.SnapshotCreateRequest;
import bow.proto.SnapshotDeleteRequest;
import bow.proto.SnapshotInfo;
import bow.proto.SnapshotListReply;
import bow.proto.SnapshotListRequest;
import bow.proto.SnapshotRollbackRequest;
import bow.proto.StatusReply;
import bow.proto.StatusRequest;
import bow.shared.SharedFormat;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code bowctl snapshot create|list|delete|rollback}: the snapshots of a shared-mode daemon. */
@Command(name = "snapshot", mixinStandardHelpOptions = true,
        description = {"Manage the snapshots of a daemon in shared mode (bowd --mode shared): up to 64 snapshots of the origin on one COW.",
                "Each snapshot is served over NBD as the export 'snapshot-ID' and, when it has a name, also 'snapshot-NAME'; "
                        + "read-only unless it was created --writable. A snapshot is named on the command line by its ID (0..63) or its name.",
                "Other modes answer 'not supported' (exit 1)."},
        subcommands = {SnapshotCommand.Create.class, SnapshotCommand.ListSnapshots.class, SnapshotCommand.Delete.class,
                SnapshotCommand.Rollback.class})
public final class SnapshotCommand implements Runnable {
    @Spec CommandSpec spec;

    @Override
    public void run() {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "missing subcommand (create, list, delete, rollback)");
    }

    static Response ask(ControlOptions control, Request req, PrintWriter err, int[] code) {
        Response r = control.call(req, err, code);
        return r == null || code[0] != 0 ? null : r;
    }

    @Command(name = "create", mixinStandardHelpOptions = true,
            description = {"Take a snapshot of the origin as it is now (every write acknowledged before is in it) and print its ID.",
                    "With several NAMEs, one snapshot per NAME, in that order, over one connection to the daemon (one after the other, "
                            + "not at one instant): one ID per line as each is created. Every name is checked before the first is created; "
                            + "it stops at the first that fails (those before it exist; their IDs are printed).",
                    "Durable when the command returns."},
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:created; the ID is printed", "1:failure (I/O, a full COW, or a daemon not in shared mode)",
                    "2:bad name (1 to 32 of A-Z a-z 0-9 . _ -, not all digits, not starting with '-'), a name given twice, or the name is taken",
                    "5:daemon not reachable", "6:permission denied", "7:invalid state (64 snapshots exist: the limit)"})
    public static final class Create implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Mixin ControlOptions control;

        @Option(names = "--name", paramLabel = "NAME", description = "Also name it (its export is then also snapshot-NAME); the same as a NAME argument, before the others.")
        String name;

        @Parameters(arity = "0..*", paramLabel = "NAME", description = "Create one named snapshot per NAME (none: one unnamed snapshot).")
        List<String> names;

        @Option(names = "--writable", description = "Its export accepts writes (they change that snapshot only); with several NAMEs, every one's.")
        boolean writable;

        @Option(names = "--json", description = "Print a JSON object {id, name, writable, exports} instead of the bare ID (one line per snapshot).")
        boolean json;

        @Override
        public Integer call() {
            return run(spec.commandLine().getOut(), spec.commandLine().getErr());
        }

        /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
        int run(PrintWriter out, PrintWriter err) {
            List<String> all = new ArrayList<>();
            if (name != null) all.add(name);
            if (names != null) all.addAll(names);
            List<Request> reqs = new ArrayList<>();
            for (String n : all) {
                String bad = SharedFormat.nameError(n);
                if (bad == null && all.indexOf(n) != all.lastIndexOf(n)) bad = "given twice";
                if (bad != null) {
                    err.println("bowctl: bad snapshot name '" + n + "': " + bad);
                    err.flush();
                    return ExitCodes.USAGE;
                }
                reqs.add(Request.newBuilder().setSnapshotCreate(SnapshotCreateRequest.newBuilder().setName(n).setWritable(writable)).build());
            }
            if (all.isEmpty()) {
                all.add(null);
                reqs.add(Request.newBuilder().setSnapshotCreate(SnapshotCreateRequest.newBuilder().setName("").setWritable(writable)).build());
            }
            int[] done = {0};
            int code = control.callEach(reqs, err, r -> {
                String n = all.get(done[0]++);
                int id = r.getSnapshotCreated().getId();
                if (json) {
                    Map<String, Object> f = new LinkedHashMap<>();
                    f.put("id", id);
                    f.put("name", n);
                    f.put("writable", writable);
                    f.put("exports", new Json.Raw("[" + Json.quote("snapshot-" + id)
                            + (n == null ? "" : "," + Json.quote("snapshot-" + n)) + "]"));
                    out.println(Json.object(f));
                } else {
                    out.println(id);
                }
                out.flush();
            }, r -> { });
            if (code != ExitCodes.OK && done[0] > 0 && done[0] < reqs.size()) {
                err.println("bowctl: created " + done[0] + " of " + reqs.size() + " snapshots (" + String.join(", ", all.subList(0, done[0]))
                        + "); stopped at '" + all.get(done[0]) + "'");
                err.flush();
            }
            return code;
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true,
            description = {"List the snapshots: ID, name, when it was created (local time, ISO-8601), whether it is writable, "
                    + "the chunks it holds alone (what deleting it frees) and those it shares with other snapshots; "
                    + "then the COW's free and total chunks."},
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:ok", "1:failure (or a daemon not in shared mode)", "5:daemon not reachable", "6:permission denied"})
    public static final class ListSnapshots implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Mixin ControlOptions control;

        @Option(names = "--json", description = "Print one JSON object {snapshots: [{id, name, created, created_millis, writable, "
                + "chunks_alone, chunks_shared}], chunk_bytes, free_chunks, total_chunks}.")
        boolean json;

        private static final DateTimeFormatter CREATED = DateTimeFormatter.ISO_OFFSET_DATE_TIME;

        static String created(long millis) {
            return CREATED.format(Instant.ofEpochMilli(millis).truncatedTo(ChronoUnit.SECONDS).atZone(ZoneId.systemDefault()));
        }

        @Override
        public Integer call() {
            return run(spec.commandLine().getOut(), spec.commandLine().getErr());
        }

        /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
        int run(PrintWriter out, PrintWriter err) {
            int[] code = {0};
            Response r = ask(control, Request.newBuilder().setSnapshotList(SnapshotListRequest.getDefaultInstance()).build(), err, code);
            if (r == null) return code[0];
            SnapshotListReply l = r.getSnapshotList();
            if (json) {
                StringBuilder a = new StringBuilder("[");
                for (SnapshotInfo s : l.getSnapshotsList()) {
                    if (a.length() > 1) a.append(',');
                    Map<String, Object> f = new LinkedHashMap<>();
                    f.put("id", s.getId());
                    f.put("name", s.getName().isEmpty() ? null : s.getName());
                    f.put("created", created(s.getCreatedMillis()));
                    f.put("created_millis", s.getCreatedMillis());
                    f.put("writable", s.getWritable());
                    f.put("chunks_alone", s.getChunksAlone());
                    f.put("chunks_shared", s.getChunksShared());
                    a.append(Json.object(f));
                }
                Map<String, Object> f = new LinkedHashMap<>();
                f.put("snapshots", new Json.Raw(a.append(']').toString()));
                f.put("chunk_bytes", l.getChunkBytes());
                f.put("free_chunks", l.getFreeChunks());
                f.put("total_chunks", l.getTotalChunks());
                out.println(Json.object(f));
            } else {
                String row = "%-3s %-32s %-25s %-8s %10s %10s%n";
                out.printf(row, "ID", "NAME", "CREATED", "WRITABLE", "ALONE", "SHARED");
                for (SnapshotInfo s : l.getSnapshotsList()) {
                    out.printf(row, s.getId(), s.getName().isEmpty() ? "-" : s.getName(), created(s.getCreatedMillis()),
                            s.getWritable() ? "yes" : "no", s.getChunksAlone(), s.getChunksShared());
                }
                long cb = l.getChunkBytes();
                out.printf("%d snapshot%s; COW: %d of %d chunks free (%s of %s; chunk %d bytes)%n", l.getSnapshotsCount(),
                        l.getSnapshotsCount() == 1 ? "" : "s", l.getFreeChunks(), l.getTotalChunks(),
                        bytes(l.getFreeChunks() * cb), bytes(l.getTotalChunks() * cb), cb);
            }
            out.flush();
            return ExitCodes.OK;
        }

        static String bytes(long b) {
            if (b < 1024) return b + " B";
            String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB"};
            double v = b;
            int u = -1;
            while (v >= 1024 && u < units.length - 1) {
                v /= 1024;
                u++;
            }
            return String.format("%.1f %s", v, units[u]);
        }
    }

    @Command(name = "delete", mixinStandardHelpOptions = true,
            description = {"Delete a snapshot: its exports go away at once (connections to them get I/O errors) and the chunks "
                    + "it held alone are given back to the COW (in the background: see the free chunks in 'bowctl snapshot list')."},
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:deleted", "1:failure (or a daemon not in shared mode)", "2:no such snapshot", "5:daemon not reachable",
                    "6:permission denied", "7:invalid state"})
    public static final class Delete implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Mixin ControlOptions control;

        @Parameters(paramLabel = "ID|NAME", description = "The snapshot.")
        String snapshot;

        @Override
        public Integer call() {
            return run(spec.commandLine().getOut(), spec.commandLine().getErr());
        }

        /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
        int run(PrintWriter out, PrintWriter err) {
            int[] code = {0};
            Response r = ask(control, Request.newBuilder().setSnapshotDelete(SnapshotDeleteRequest.newBuilder().setSnapshot(snapshot)).build(), err, code);
            if (r == null) return code[0];
            out.println(r.getMessage());
            out.flush();
            return ExitCodes.OK;
        }
    }

    @Command(name = "rollback", mixinStandardHelpOptions = true,
            description = {"Roll the origin back to a snapshot, online, with the daemon running: the origin becomes that snapshot's "
                    + "content; the snapshot and every other one keep theirs.",
                    "Returns once the rollback has started; progress and the outcome are in 'bowctl status' (state ROLLING_BACK, "
                            + "details 'rollback' = done/total chunks and 'error'). With --wait, waits for the end and shows the progress."},
            exitCodeListHeading = "%nExit codes:%n",
            exitCodeList = {"0:started (with --wait: finished)", "1:failure (with --wait: the rollback failed; or a daemon not in shared mode)",
                    "2:no such snapshot", "5:daemon not reachable", "6:permission denied", "7:invalid state (a rollback is running already)"})
    public static final class Rollback implements Callable<Integer> {
        @Spec CommandSpec spec;
        @Mixin ControlOptions control;

        @Parameters(paramLabel = "ID|NAME", description = "The snapshot.")
        String snapshot;

        @Option(names = "--wait", description = "Wait until the rollback is done, with a progress line on a terminal; exit 1 if it fails.")
        boolean waitForEnd;

        /** How often --wait asks the daemon. */
        private static final long POLL_MILLIS = 200;

        @Override
        public Integer call() throws InterruptedException {
            PrintWriter out = spec.commandLine().getOut();
            PrintWriter err = spec.commandLine().getErr();
            int[] code = {0};
            long chunkBytes = 0;
            if (waitForEnd) {
                // The chunk size turns the chunk counts of the progress into bytes.
                Response l = ask(control, Request.newBuilder().setSnapshotList(SnapshotListRequest.getDefaultInstance()).build(), err, code);
                if (l == null) return code[0];
                chunkBytes = l.getSnapshotList().getChunkBytes();
            }
            Response r = ask(control, Request.newBuilder().setSnapshotRollback(SnapshotRollbackRequest.newBuilder().setSnapshot(snapshot)).build(), err, code);
            if (r == null) return code[0];
            out.println(r.getMessage());
            out.flush();
            if (!waitForEnd) return ExitCodes.OK;
            ProgressLine progress = new ProgressLine(err);
            Request status = Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build();
            while (true) {
                Response st = ask(control, status, err, code);
                if (st == null) {
                    progress.clear();
                    err.println("bowctl: lost the daemon while waiting for the rollback; it may still be running (see bowctl status)");
                    err.flush();
                    return code[0];
                }
                StatusReply s = st.getStatus();
                long[] p = parseProgress(s.getDetailsOrDefault("rollback", ""));
                if (p != null) progress.progress("rollback", p[0] * chunkBytes, p[1] * chunkBytes);
                if (!"ROLLING_BACK".equals(s.getState())) {
                    progress.clear();
                    String error = s.getDetailsOrDefault("error", "");
                    boolean complete = p != null ? p[0] >= p[1] : error.isEmpty();
                    if (!complete) {
                        err.println("bowctl: the rollback to snapshot " + snapshot + " failed"
                                + (p != null ? " after " + p[0] + " of " + p[1] + " chunks" : "") + (error.isEmpty() ? "" : ": " + error));
                        err.flush();
                        return ExitCodes.FAILURE;
                    }
                    out.println("rolled back to snapshot " + snapshot + (p != null ? " (" + p[1] + " chunks)" : ""));
                    out.flush();
                    return ExitCodes.OK;
                }
                Thread.sleep(POLL_MILLIS);
            }
        }

        /** "done/total chunks" as {done, total}, or null. */
        static long[] parseProgress(String detail) {
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("\\s*(\\d+)\\s*/\\s*(\\d+).*").matcher(detail);
            if (!m.matches()) return null;
            try {
                return new long[] {Long.parseLong(m.group(1)), Long.parseLong(m.group(2))};
            } catch (NumberFormatException e) {
                return null;
            }
        }
    }
}
