package bow.ctl;

import bow.shared.SharedCheck;
import bow.shared.SharedFormat;
import bow.shared.SharedFormat.Header;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code bowctl shared check|dump}: read-only looks at a shared-mode COW, no daemon needed. */
@Command(name = "shared", mixinStandardHelpOptions = true,
        description = "Inspect a shared-mode COW offline (read-only): check it like thin_check, dump it like thin_dump.",
        subcommands = {SharedCheckCommand.class, SharedDumpCommand.class})
public final class SharedCommand implements Callable<Integer> {
    /** The store has problems (check), or could not be read to the end (dump); nothing was written. */
    static final int PROBLEMS = ExitCodes.LOG_INVALID;
    /** The COW is blank: no shared store on it yet. */
    static final int BLANK = ExitCodes.NO_CHECKPOINT;

    @Spec CommandSpec spec;

    @Override
    public Integer call() {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing subcommand: check or dump");
    }

    /** "shared store, version 2, chunk size 32 sectors (16384 bytes), 1024 chunks, origin N bytes". */
    static String geometry(Header h) {
        return "shared store, version " + SharedFormat.VERSION + ", chunk size " + h.chunkSectors() + " sectors (" + h.chunkBytes()
                + " bytes), " + h.nrChunks() + " chunks, origin " + h.originBytes() + " bytes" + (h.valid() == 1 ? "" : ", INVALIDATED");
    }

    /** "slot 1 in use (sequence 7); slot 0: valid (sequence 6)". */
    static String slots(List<SharedCheck.Slot> slots) {
        StringBuilder b = new StringBuilder();
        for (SharedCheck.Slot s : slots) if (s.inUse()) b.append("slot ").append(s.slot()).append(" in use (sequence ").append(s.header().sequence()).append(')');
        for (SharedCheck.Slot s : slots) {
            if (s.inUse()) continue;
            if (b.length() > 0) b.append("; ");
            b.append("slot ").append(s.slot()).append(": ");
            switch (s.state()) {
                case VALID -> b.append("valid (sequence ").append(s.header().sequence()).append(')');
                case BLANK -> b.append("blank");
                case INVALID -> b.append("invalid: ").append(s.problem());
            }
        }
        return b.toString();
    }

    static String created(long millis) { return Instant.ofEpochMilli(millis).toString(); }

    static Json.Raw array(List<?> values) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < values.size(); i++) {
            if (i > 0) b.append(',');
            b.append(Json.value(values.get(i)));
        }
        return new Json.Raw(b.append(']').toString());
    }

    static Map<String, Object> headerJson(Header h) {
        Map<String, Object> f = new LinkedHashMap<>();
        f.put("slot", h.slot());
        f.put("sequence", h.sequence());
        f.put("valid", h.valid() == 1);
        f.put("version", SharedFormat.VERSION);
        f.put("chunk_sectors", h.chunkSectors());
        f.put("chunk_bytes", h.chunkBytes());
        f.put("nr_chunks", h.nrChunks());
        f.put("free_chunks", h.freeChunks());
        f.put("origin_bytes", h.originBytes());
        f.put("root_tree_chunk", h.rootTreeChunk());
        f.put("tree_level", h.treeLevel());
        f.put("nr_journal_chunks", h.journalChunks());
        f.put("nr_bitmap_chunks", h.layout().bitmapChunks());
        f.put("first_data_chunk", h.layout().firstDataChunk());
        f.put("live", array(SharedCheck.idList(h.snapmask())));
        f.put("deleting", array(SharedCheck.idList(h.deletingMask())));
        f.put("delete_resume", h.deletingMask() == 0 ? null : h.deleteResume());
        f.put("rollback_target", h.rollingBack() ? h.rollbackTarget() : null);
        f.put("rollback_resume", h.rollingBack() ? h.rollbackResume() : null);
        f.put("rollback_delete_target", h.rollingBack() && h.rollbackDelete());
        return f;
    }

    static Json.Raw slotsJson(List<SharedCheck.Slot> slots) {
        List<Object> l = new ArrayList<>();
        for (SharedCheck.Slot s : slots) {
            Map<String, Object> f = new LinkedHashMap<>();
            f.put("slot", s.slot());
            f.put("state", s.state().name().toLowerCase(java.util.Locale.ROOT));
            f.put("in_use", s.inUse());
            f.put("sequence", s.header() == null ? null : s.header().sequence());
            f.put("chunk_sectors", s.chunkSectors() == 0 ? null : s.chunkSectors());
            f.put("problem", s.state() == SharedCheck.SlotState.INVALID ? s.problem() : null);
            l.add(new Json.Raw(Json.object(f)));
        }
        return array(l);
    }

    /** The snapshot table: live snapshots in ID order. */
    static Json.Raw snapshotsJson(Header h) {
        List<Object> l = new ArrayList<>();
        for (int id : SharedCheck.idList(h.snapmask())) {
            SharedFormat.Snapshot s = h.snapshot(id);
            Map<String, Object> f = new LinkedHashMap<>();
            f.put("id", id);
            f.put("name", s.name().isEmpty() ? null : s.name());
            f.put("created", created(s.createdMillis()));
            f.put("created_ms", s.createdMillis());
            f.put("writable", s.writable());
            l.add(new Json.Raw(Json.object(f)));
        }
        return array(l);
    }
}
