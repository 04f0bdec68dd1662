package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.shared.Leaf.Exc;
import bow.shared.SharedCheck;
import bow.shared.SharedDump;
import bow.shared.SharedFormat;
import bow.shared.SharedFormat.Header;
import bow.shared.SharedFormatException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code bowctl shared dump}: the header, the snapshots and every mapping of a shared-mode COW, streamed. */
@Command(name = "dump", mixinStandardHelpOptions = true,
        description = {"Print a shared-mode COW's header, its snapshot table and every mapping (like thin_dump), "
                + "read-only: for each origin chunk that has exceptions, each exception's snapshots and the COW chunk "
                + "holding their data, in origin chunk order. Output is streamed, so a full COW needs no more memory than an empty one.",
                "Text mapping lines read 'ORIGIN -> {IDS}:CHUNK ...'. It checks only what reading needs (block magics, "
                        + "checksums); 'bowctl shared check' checks the rest."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:dumped", "1:I/O or other failure", "2:usage error", "3:the COW is blank (no shared store on it)",
                "4:no valid header, or a tree block that cannot be read (dumped up to it)", "6:permission denied"})
public final class SharedDumpCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--cow", required = true, paramLabel = "PATH", description = "The COW device or image (opened read-only).")
    Path cow;

    @Option(names = "--json", description = "One JSON object instead of text (streamed; \"error\" at the end is null when the dump is whole).")
    boolean json;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try (BlockDevice dev = OfflineDevice.open(cow, true)) {
            SharedCheck.HeaderRead hr = SharedCheck.readHeader(dev);
            if (hr.blank()) {
                if (json) out.println("{\"cow\":" + Json.quote(cow.toString()) + ",\"blank\":true,\"header\":null}");
                out.flush();
                err.println("bowctl: " + cow + " is blank: no shared store on it");
                err.flush();
                return SharedCommand.BLANK;
            }
            if (hr.header() == null) {
                err.println("bowctl: " + cow + ": " + hr.problem());
                err.flush();
                return SharedCommand.PROBLEMS;
            }
            String error = json ? dumpJson(dev, hr, out) : dumpText(dev, hr, out);
            out.flush();
            if (error != null) {
                err.println("bowctl: " + cow + ": dump stopped: " + error);
                err.flush();
                return SharedCommand.PROBLEMS;
            }
            return ExitCodes.OK;
        } catch (IOException e) {
            out.flush();
            return OfflineDevice.report(err, cow, e);
        }
    }

    /** Returns the error that stopped the walk, or null. */
    private String dumpText(BlockDevice dev, SharedCheck.HeaderRead hr, PrintWriter out) throws IOException {
        Header h = hr.header();
        out.println(cow + ": " + SharedCommand.geometry(h) + ", " + h.freeChunks() + " free");
        out.println("header: " + SharedCommand.slots(hr.slots()));
        out.println("tree: level " + h.treeLevel() + ", root chunk " + h.rootTreeChunk());
        out.println("snapshots: " + Long.bitCount(h.snapmask()));
        if (h.snapmask() != 0) {
            out.printf("  %-3s %-32s %-24s %s%n", "ID", "NAME", "CREATED", "WRITABLE");
            for (int id : SharedCheck.idList(h.snapmask())) {
                SharedFormat.Snapshot s = h.snapshot(id);
                out.printf("  %-3d %-32s %-24s %s%n", id, s.name().isEmpty() ? "-" : s.name(), SharedCommand.created(s.createdMillis()),
                        s.writable() ? "yes" : "no");
            }
        }
        if (h.deletingMask() != 0) {
            out.println("being deleted: " + SharedCheck.ids(h.deletingMask()) + " (reclaim resumes at origin chunk " + h.deleteResume() + ")");
        }
        if (h.rollingBack()) {
            out.println("rolling back: the origin to snapshot " + h.rollbackTarget() + " (resumes at origin chunk " + h.rollbackResume()
                    + (h.rollbackDelete() ? "; the snapshot is deleted when it is done" : "") + ")");
        }
        out.println("mappings (origin chunk -> {snapshot IDs}:COW chunk ...):");
        long[] count = {0};
        try {
            SharedDump.mappings(dev, h, (origin, excs) -> {
                StringBuilder b = new StringBuilder().append(origin).append(" ->");
                for (Exc x : excs) b.append(" {").append(SharedCheck.ids(x.share())).append("}:").append(x.chunk());
                out.println(b);
                count[0]++;
            });
        } catch (SharedFormatException e) {
            return e.getMessage();
        }
        out.println(count[0] + " mappings");
        return null;
    }

    private String dumpJson(BlockDevice dev, SharedCheck.HeaderRead hr, PrintWriter out) throws IOException {
        Header h = hr.header();
        Map<String, Object> f = new LinkedHashMap<>();
        f.put("cow", cow.toString());
        f.put("blank", false);
        f.put("header", SharedCommand.headerJson(h));
        f.put("slots", SharedCommand.slotsJson(hr.slots()));
        f.put("snapshots", SharedCommand.snapshotsJson(h));
        String head = Json.object(f);
        out.print(head.substring(0, head.length() - 1));   // the object stays open for the streamed mappings
        out.println(",\"mappings\":[");
        boolean[] first = {true};
        String error = null;
        try {
            SharedDump.mappings(dev, h, (origin, excs) -> {
                StringBuilder b = new StringBuilder(first[0] ? "" : ",\n");
                first[0] = false;
                b.append("{\"origin\":").append(origin).append(",\"exceptions\":[");
                for (int i = 0; i < excs.size(); i++) {
                    if (i > 0) b.append(',');
                    b.append("{\"snapshots\":").append(SharedCommand.array(SharedCheck.idList(excs.get(i).share())).json())
                            .append(",\"chunk\":").append(excs.get(i).chunk()).append('}');
                }
                out.print(b.append("]}"));
            });
        } catch (SharedFormatException e) {
            error = e.getMessage();
        }
        out.println();
        out.println("],\"error\":" + (error == null ? "null" : Json.quote(error)) + "}");
        return error;
    }
}
