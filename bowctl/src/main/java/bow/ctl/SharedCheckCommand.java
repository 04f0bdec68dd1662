package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.shared.SharedCheck;
import bow.shared.SharedFormat.Header;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code bowctl shared check}: the read-only fsck of a shared-mode COW ({@link SharedCheck}). */
@Command(name = "check", mixinStandardHelpOptions = true,
        description = {"Check a shared-mode COW, like thin_check, writing nothing: both header slots, the tree "
                + "(leaf and node magics, checksums, key order, every leaf at the same depth), share masks naming only live "
                + "or being-deleted snapshots, no chunk used twice, and the bitmap equal to the metadata plus the chunks "
                + "reachable from the tree.",
                "Run it on a COW no daemon is writing: a store committed to while it is read may look inconsistent."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:the store is clean", "1:I/O or other failure (no such file, a COW too small to hold a header)",
                "2:usage error", "3:the COW is blank (no shared store on it)",
                "4:problems found (the first ones are listed)", "6:permission denied"})
public final class SharedCheckCommand implements Callable<Integer> {
    /** Problems printed in text; --json lists every one the check keeps ({@link SharedCheck#DEFAULT_MAX_PROBLEMS}). */
    static final int TEXT_PROBLEMS = 20;

    @Spec CommandSpec spec;

    @Option(names = "--cow", required = true, paramLabel = "PATH", description = "The COW device or image (opened read-only).")
    Path cow;

    @Option(names = "--json", description = "One JSON object instead of text.")
    boolean json;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        SharedCheck.Result r;
        try (BlockDevice dev = OfflineDevice.open(cow, true)) {
            r = SharedCheck.run(dev);
        } catch (IOException e) {
            return OfflineDevice.report(err, cow, e);
        } catch (RuntimeException e) {
            err.println("bowctl: " + cow + ": " + e);
            err.flush();
            return ExitCodes.FAILURE;
        }
        if (json) out.println(toJson(r));
        else printText(r, out);
        out.flush();
        if (r.blank()) {
            err.println("bowctl: " + cow + " is blank: no shared store on it");
            err.flush();
            return SharedCommand.BLANK;
        }
        if (!r.clean()) {
            err.println("bowctl: " + cow + ": " + r.problemCount() + " problem" + (r.problemCount() == 1 ? "" : "s") + " found");
            err.flush();
            return SharedCommand.PROBLEMS;
        }
        return ExitCodes.OK;
    }

    private void printText(SharedCheck.Result r, PrintWriter out) {
        Header h = r.header();
        if (h == null && r.blank()) {
            out.println(cow + ": blank (both header slots are zero)");
            return;
        }
        if (h != null) {
            SharedCheck.Counts c = r.counts();
            out.println(cow + ": " + SharedCommand.geometry(h));
            out.println("header: " + SharedCommand.slots(r.slots()));
            out.println("snapshots: " + Long.bitCount(h.snapmask()) + " live" + (h.snapmask() == 0 ? "" : " (" + SharedCheck.ids(h.snapmask()) + ")")
                    + (h.deletingMask() == 0 ? "" : "; being deleted: " + SharedCheck.ids(h.deletingMask()) + " (reclaim resumes at origin chunk " + h.deleteResume() + ")"));
            out.println("tree: level " + h.treeLevel() + ", root chunk " + h.rootTreeChunk() + ": " + c.nodes() + " nodes, " + c.leaves()
                    + " leaves, " + c.exceptions() + " exceptions");
            out.println("chunks: " + c.metadataChunks() + " metadata, " + c.treeChunks() + " tree, " + c.dataChunks() + " data, "
                    + c.freeChunks() + " free of " + c.nrChunks() + " (bitmap copy " + h.slot() + "; header says " + h.freeChunks() + " free)");
        } else {
            out.println(cow + ": no usable header");
            out.println("header: " + SharedCommand.slots(r.slots()));
        }
        for (String n : r.notes()) out.println("note: " + n);
        if (r.clean()) {
            out.println("clean");
            return;
        }
        out.println(r.problemCount() + " problem" + (r.problemCount() == 1 ? "" : "s") + ":");
        int shown = Math.min(TEXT_PROBLEMS, r.problems().size());
        for (int i = 0; i < shown; i++) out.println("  " + r.problems().get(i));
        if (r.problemCount() > shown) {
            out.println("  ... and " + (r.problemCount() - shown) + " more" + (shown < r.problems().size()
                    ? " (--json lists the first " + r.problems().size() + ")" : ""));
        }
    }

    private String toJson(SharedCheck.Result r) {
        Map<String, Object> f = new LinkedHashMap<>();
        f.put("cow", cow.toString());
        f.put("blank", r.blank());
        f.put("clean", r.clean());
        f.put("header", r.header() == null ? null : SharedCommand.headerJson(r.header()));
        f.put("slots", SharedCommand.slotsJson(r.slots()));
        if (r.counts() != null) {
            SharedCheck.Counts c = r.counts();
            Map<String, Object> k = new LinkedHashMap<>();
            k.put("nr_chunks", c.nrChunks());
            k.put("metadata_chunks", c.metadataChunks());
            k.put("nodes", c.nodes());
            k.put("leaves", c.leaves());
            k.put("exceptions", c.exceptions());
            k.put("data_chunks", c.dataChunks());
            k.put("used_chunks", c.usedChunks());
            k.put("free_chunks", c.freeChunks());
            f.put("counts", k);
        } else {
            f.put("counts", null);
        }
        f.put("problem_count", r.problemCount());
        List<Object> ps = new ArrayList<>();
        for (SharedCheck.Problem p : r.problems()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("chunk", p.chunk() < 0 ? null : p.chunk());
            m.put("problem", p.problem());
            ps.add(new Json.Raw(Json.object(m)));
        }
        f.put("problems", SharedCommand.array(ps));
        f.put("notes", SharedCommand.array(r.notes()));
        return Json.object(f);
    }
}
