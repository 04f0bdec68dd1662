package bow.shared;

import bow.blockdev.BlockDevice;
import bow.shared.Leaf.Entry;
import bow.shared.Leaf.Exc;
import bow.shared.SharedFormat.Header;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;

/**
 * Every mapping of a shared-mode COW in origin-chunk order ({@code bowctl shared dump}, like
 * {@code thin_dump}), streamed: one decoded block per tree level in memory. Read-only; it decodes
 * (and so checks the magic, checksum and self number of) every block it passes, and checks
 * nothing else: that is {@link SharedCheck}'s job.
 */
public final class SharedDump {
    private SharedDump() {}

    /** Receives the mappings in ascending origin chunk order. */
    public interface Sink {
        /** Origin chunk {@code origin}: for each exception, the snapshots sharing it and the COW chunk holding their data. */
        void mapping(long origin, List<Exc> exceptions) throws IOException;
    }

    /**
     * Walks the tree of header {@code h} (as {@link SharedCheck#readHeader} picked it). Throws
     * {@link SharedFormatException} at the first block that does not decode or lies outside the
     * store, after the mappings before it were delivered.
     */
    public static void mappings(BlockDevice cow, Header h, Sink sink) throws IOException {
        SharedCheck.ReadOnlyChunks chunks = new SharedCheck.ReadOnlyChunks(cow, h.chunkBytes());
        try {
            walk(chunks, h, h.rootTreeChunk(), 0, sink);
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }

    private static void walk(SharedCheck.ReadOnlyChunks chunks, Header h, long c, int depth, Sink sink) throws IOException {
        long first = h.layout().firstDataChunk();
        String what = depth == h.treeLevel() ? "leaf" : "node";
        if (c < first || c >= h.nrChunks()) throw new SharedFormatException(c, what, "chunk " + c + " is outside the data area [" + first + ", " + h.nrChunks() + ")");
        if (!chunks.onDevice(c)) throw new SharedFormatException(c, what, "past the end of the COW device");
        if (depth < h.treeLevel()) {
            Node n = Node.decode(chunks.read(c), c);
            for (int j = 0; j < n.count; j++) walk(chunks, h, n.children[j], depth + 1, sink);
            return;
        }
        Leaf l = Leaf.decode(chunks.read(c), c);
        for (Entry e : l.entries) sink.mapping(e.origin, List.copyOf(e.excs));
    }
}
