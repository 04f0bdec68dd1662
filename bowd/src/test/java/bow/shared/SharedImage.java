package bow.shared;

import bow.blockdev.MemoryBlockDevice;
import bow.shared.SharedFormat.Header;
import bow.shared.SharedFormat.Snapshot;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.Consumer;

/**
 * A shared-mode COW laid out as docs/FORMATS.md says, built with {@link SharedTree} and
 * {@link BitmapAllocator} alone (no engine) on a {@link MemoryBlockDevice}: tree blocks are
 * written where they are allocated, {@link #commit} writes the bitmap copy and header slot of the
 * next sequence. For the check and dump tests, which then break one thing at a time.
 */
public final class SharedImage {
    public final int chunkSectors;
    public final int chunkBytes;
    public final SharedFormat.Layout layout;
    public final BitmapAllocator alloc;
    public final SharedTree tree;
    public final MemoryBlockDevice cow;
    public long originBytes = 1 << 30;
    private final Snapshot[] snaps = new Snapshot[SharedFormat.MAX_SNAPSHOTS];
    private long sequence;
    private Header header;

    private SharedImage(int chunkSectors, long nrChunks, int fanout, int leafBytes, int maxSnapshots) {
        this.chunkSectors = chunkSectors;
        this.chunkBytes = chunkSectors * SharedFormat.SECTOR;
        this.layout = SharedFormat.layout(nrChunks, chunkSectors, 0);
        this.alloc = BitmapAllocator.format(layout);
        this.cow = new MemoryBlockDevice(Math.toIntExact(nrChunks * chunkBytes));
        ChunkStore store = new ChunkStore() {
            @Override public byte[] read(long chunk) { return readChunk(chunk); }
            @Override public void write(long chunk, byte[] data) {
                if (!alloc.isFresh(chunk)) throw new AssertionError("tree wrote chunk " + chunk + ", which a commit may use");
                writeChunk(chunk, data);
            }
        };
        this.tree = SharedTree.format(store, alloc, chunkBytes, fanout, leafBytes, maxSnapshots);
    }

    /** Small nodes and leaves, so that a few hundred exceptions make a tree of several levels. */
    public static SharedImage small(long nrChunks) {
        return new SharedImage(8, nrChunks, 4, Leaf.bytesFor(2, 2 * 8), 8);
    }

    /** Full-size nodes and leaves, as the engine writes them. */
    public static SharedImage full(int chunkSectors, long nrChunks) {
        int cb = chunkSectors * SharedFormat.SECTOR;
        return new SharedImage(chunkSectors, nrChunks, Node.maxEntries(cb), cb, SharedFormat.MAX_SNAPSHOTS);
    }

    public void createSnapshot(int id, String name, boolean writable, long createdMillis) {
        tree.createSnapshot(id);
        snaps[id] = new Snapshot(createdMillis, writable, name);
    }

    public void deleteSnapshot(int id) {
        tree.deleteSnapshot(id);
        snaps[id] = null;
    }

    /** The COW chunk the origin chunk's old data goes to, or -1 when no snapshot needs it. */
    public long originWrite(long origin) { return tree.prepareOriginWrite(origin); }

    public SharedTree.SnapWrite snapshotWrite(long origin, int snap) { return tree.prepareSnapshotWrite(origin, snap); }

    /** Commits as the engine does: bitmap copy seq &amp; 1, then header slot seq &amp; 1. */
    public Header commit() {
        sequence++;
        int copy = (int) (sequence & 1);
        BitmapAllocator.Commit c = alloc.prepareCommit(copy);
        for (int i = 0; i < c.indices().length; i++) writeChunk(layout.bitmapChunk(copy, c.indices()[i]), c.images()[i]);
        alloc.committed(c);
        header = new Header(1, chunkSectors, tree.root(), tree.snapmask(), tree.level(), 0, sequence, layout.nrChunks(), originBytes,
                alloc.freeCount(), tree.deleting(), tree.deleteResume(), snaps);
        writeChunk(copy, SharedFormat.encodeHeader(header));
        return header;
    }

    public Header header() { return header; }

    public byte[] readChunk(long chunk) {
        byte[] b = new byte[chunkBytes];
        try {
            cow.read(chunk * chunkBytes, ByteBuffer.wrap(b));
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        return b;
    }

    public void writeChunk(long chunk, byte[] data) {
        try {
            cow.write(chunk * chunkBytes, ByteBuffer.wrap(data));
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    /** Overwrites bytes inside a chunk (checksums are not fixed: that is the point). */
    public void poke(long chunk, int offset, byte... bytes) {
        byte[] b = readChunk(chunk);
        System.arraycopy(bytes, 0, b, offset, bytes.length);
        writeChunk(chunk, b);
    }

    /** Sets or clears chunk {@code c}'s bit in the bitmap copy the last header uses. */
    public void setBitmapBit(long c, boolean inUse) {
        long bc = layout.bitmapChunk(header.slot(), (int) (c / layout.bitsPerBitmapChunk()));
        long bit = c % layout.bitsPerBitmapChunk();
        byte[] b = readChunk(bc);
        if (inUse) b[(int) (bit / 8)] |= (byte) (1 << (bit % 8));
        else b[(int) (bit / 8)] &= (byte) ~(1 << (bit % 8));
        writeChunk(bc, b);
    }

    /** Decodes the leaf at {@code chunk}, lets {@code change} alter it and writes it back, validly encoded. */
    public void rewriteLeaf(long chunk, Consumer<Leaf> change) {
        Leaf l = Leaf.decode(readChunk(chunk), chunk);
        change.accept(l);
        writeChunk(chunk, l.encode(chunkBytes, chunk));
    }

    public void rewriteNode(long chunk, Consumer<Node> change) {
        Node n = Node.decode(readChunk(chunk), chunk);
        change.accept(n);
        writeChunk(chunk, n.encode(chunkBytes, chunk));
    }

    /** Rewrites the header in use (valid checksum) with {@code change} applied. */
    public void rewriteHeader(java.util.function.UnaryOperator<Header> change) {
        header = change.apply(header);
        writeChunk(header.slot(), SharedFormat.encodeHeader(header));
    }

    /** The first leaf (in key order) and the chunk it is in. */
    public long firstLeafChunk() {
        long c = tree.root();
        for (int d = 0; d < tree.level(); d++) c = Node.decode(readChunk(c), c).children[0];
        return c;
    }

    /** The leaf that holds origin chunk {@code origin}. */
    public long leafChunkFor(long origin) {
        long c = tree.root();
        for (int d = 0; d < tree.level(); d++) {
            Node n = Node.decode(readChunk(c), c);
            c = n.children[n.childFor(origin)];
        }
        return c;
    }

    public byte[] image() { return cow.snapshot(); }
}
