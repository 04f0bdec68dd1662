package bow.shared;

import bow.shared.Leaf.Entry;
import bow.shared.Leaf.Exc;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The shared store's B-tree from origin chunk to exception lists, over a {@link ChunkStore} and
 * a {@link BitmapAllocator}. Pure logic: it reads and writes tree blocks through the store and
 * hands out data chunks, but copies no data (the engine does, before it commits).
 *
 * <p>Shape (as in the seed): {@code level} levels of {@link Node}s above the {@link Leaf}s; the
 * root is always a node (level &gt;= 1), every leaf is at depth {@code level}.
 *
 * <p>Crash safety is copy-on-write: a block is changed in place only when it was allocated in
 * the current transaction ({@link BitmapAllocator#isFresh}); any other block on a changed path is
 * first "shadowed" to a new chunk and the old one freed (deferred, so the committed tree stays
 * intact until the header naming the new root is durable). Every operation either completes or,
 * when space is short, throws {@link NoSpaceException} before changing anything.
 *
 * <p>Snapshot deletion is incremental and resumable: {@link #deleteSnapshot} takes the snapshot
 * out of the snapmask and marks it "deleting"; {@link #deleteStep} walks leaves from the resume
 * key, clearing its bits, freeing exception chunks no snapshot uses any more and merging leaves
 * and nodes into their left siblings when they fit; at the end, the root loses levels while it
 * has a single child. The engine records the deleting mask and resume key in the header.
 */
public final class SharedTree {
    /** {@link SnapWrite#copyFrom} when the rest of the chunk comes from the origin. */
    public static final long FROM_ORIGIN = -1;
    /** {@link SnapWrite#copyFrom} when the snapshot already owns the chunk alone: write in place. */
    public static final long IN_PLACE = -2;

    private final ChunkStore store;
    private final BitmapAllocator alloc;
    private final int chunkBytes;
    private final int fanout;
    private final int leafBytes;
    private final int maxSnapshots;
    private long root;
    private int level;
    private long snapmask;
    private long deleting;
    private long deleteResume = -1;

    /**
     * Where a snapshot write goes: COW chunk {@code chunk}; before a partial write, the rest of
     * the chunk must be copied from COW chunk {@code copyFrom}, or from the origin
     * ({@link #FROM_ORIGIN}), or nothing ({@link #IN_PLACE}).
     */
    public record SnapWrite(long chunk, long copyFrom) {}

    private SharedTree(ChunkStore store, BitmapAllocator alloc, int chunkBytes, int fanout, int leafBytes, int maxSnapshots) {
        if (fanout < 2 || fanout > Node.maxEntries(chunkBytes)) throw new IllegalArgumentException("fanout " + fanout);
        if (maxSnapshots < 1 || maxSnapshots > SharedFormat.MAX_SNAPSHOTS) throw new IllegalArgumentException("max snapshots " + maxSnapshots);
        // a split must leave two halves that fit: room for two chunks with an exception per snapshot each
        int minLeaf = Leaf.bytesFor(2, 2 * maxSnapshots);
        if (leafBytes < minLeaf || leafBytes > chunkBytes) throw new IllegalArgumentException("leaf bytes " + leafBytes + " (at least " + minLeaf + ")");
        this.store = store;
        this.alloc = alloc;
        this.chunkBytes = chunkBytes;
        this.fanout = fanout;
        this.leafBytes = leafBytes;
        this.maxSnapshots = maxSnapshots;
    }

    /** Full-size nodes and leaves, as on disk. */
    public static SharedTree format(ChunkStore store, BitmapAllocator alloc, int chunkBytes) {
        return format(store, alloc, chunkBytes, Node.maxEntries(chunkBytes), chunkBytes, SharedFormat.MAX_SNAPSHOTS);
    }

    /**
     * A new empty tree: one empty leaf under a root node. {@code fanout} and {@code leafBytes}
     * below the chunk's capacity make splits and merges happen with few entries (tests); a leaf
     * must hold two chunks with {@code maxSnapshots} exceptions each, and at most that many
     * snapshots (live or still being deleted) can exist.
     */
    public static SharedTree format(ChunkStore store, BitmapAllocator alloc, int chunkBytes, int fanout, int leafBytes, int maxSnapshots) {
        SharedTree t = new SharedTree(store, alloc, chunkBytes, fanout, leafBytes, maxSnapshots);
        if (alloc.freeCount() < 2) throw new NoSpaceException("an empty tree", 2, alloc.freeCount());
        long leaf = alloc.allocate(), node = alloc.allocate();
        store.write(leaf, new Leaf(0).encode(chunkBytes, leaf));
        Node n = new Node(Node.maxEntries(chunkBytes));
        n.insert(0, 0, leaf);
        store.write(node, n.encode(chunkBytes, node));
        t.root = node;
        t.level = 1;
        return t;
    }

    /** The tree a header describes. */
    public static SharedTree open(ChunkStore store, BitmapAllocator alloc, int chunkBytes, int fanout, int leafBytes, int maxSnapshots,
                                  long root, int level, long snapmask, long deleting, long deleteResume) {
        SharedTree t = new SharedTree(store, alloc, chunkBytes, fanout, leafBytes, maxSnapshots);
        if (Long.bitCount(snapmask | deleting) > maxSnapshots) throw new IllegalArgumentException("more than " + maxSnapshots + " snapshots");
        if ((snapmask & deleting) != 0) throw new IllegalArgumentException("snapshots both live and deleting");
        if ((deleting != 0) != (deleteResume >= 0)) throw new IllegalArgumentException("deleting mask and resume key disagree");
        t.root = root;
        t.level = level;
        t.snapmask = snapmask;
        t.deleting = deleting;
        t.deleteResume = deleteResume;
        return t;
    }

    public long root() { return root; }
    public int level() { return level; }
    public long snapmask() { return snapmask; }
    public long deleting() { return deleting; }
    public long deleteResume() { return deleteResume; }
    public int fanout() { return fanout; }
    public int leafBytes() { return leafBytes; }
    public int maxSnapshots() { return maxSnapshots; }

    /** Free chunks an origin or snapshot write leaves untouched, so that a delete can always progress. */
    public long reserve() { return 2L * level + 4; }

    /** Most chunks one insert can allocate: shadows of the path, a split at every level, a new root, the data chunk. */
    private long insertNeed() { return 2L * (level + 1) + 2; }

    // ---------------------------------------------------------------- snapshots

    public boolean isLive(int id) { return id >= 0 && id < 64 && (snapmask >>> id & 1) != 0; }

    /** Makes snapshot {@code id} see the origin as it is now. */
    public void createSnapshot(int id) {
        if (id < 0 || id >= SharedFormat.MAX_SNAPSHOTS) throw new IllegalArgumentException("snapshot ID " + id + " is outside 0.." + (SharedFormat.MAX_SNAPSHOTS - 1));
        if (isLive(id)) throw new IllegalStateException("snapshot " + id + " exists");
        if ((deleting >>> id & 1) != 0) throw new IllegalStateException("snapshot " + id + " is still being deleted");
        if (Long.bitCount(snapmask | deleting) >= maxSnapshots) {
            throw new IllegalStateException("snapshot limit reached: at most " + maxSnapshots + " snapshots (live or being deleted) share one COW");
        }
        snapmask |= 1L << id;
    }

    /** Starts deleting snapshot {@code id}: it is gone at once; {@link #deleteStep} reclaims its chunks. */
    public void deleteSnapshot(int id) {
        requireLive(id);
        snapmask &= ~(1L << id);
        deleting |= 1L << id;
        deleteResume = 0;          // leaves before an older resume key may hold this snapshot's bits too
    }

    /**
     * Processes up to {@code maxLeaves} leaves of the pending deletion. Returns true when no
     * deletion is pending any more. Stops early, with progress kept, when space runs short; throws
     * {@link NoSpaceException} only when not even one leaf could be processed.
     */
    public boolean deleteStep(int maxLeaves) {
        int done = 0;
        while (deleting != 0) {
            if (done == maxLeaves) return false;
            long need = 2L * level + 2;
            if (alloc.freeCount() < need) {
                if (done == 0) throw new NoSpaceException("deleting snapshots " + Long.toHexString(deleting), need, alloc.freeCount());
                return false;
            }
            long next = deleteLeaf(deleteResume);
            done++;
            if (next < 0) {
                deleting = 0;
                deleteResume = -1;
            } else {
                deleteResume = next;
            }
        }
        shrink();
        return true;
    }

    private void requireLive(int id) {
        if (!isLive(id)) throw new IllegalArgumentException("no snapshot " + id);
    }

    // ---------------------------------------------------------------- lookups

    /** The COW chunk holding what snapshot {@code snap} sees at {@code origin}, or -1 when it sees the origin. O(level). */
    public long lookup(long origin, int snap) {
        requireLive(snap);
        Entry e = probe(origin).leaf.get(origin);
        if (e == null) return -1;
        long bit = 1L << snap;
        for (Exc x : e.excs) if ((x.share() & bit) != 0) return x.chunk();
        return -1;
    }

    /** The snapshots that still see the origin's current data at {@code origin} (an origin write must copy it first when non-zero). */
    public long originSharers(long origin) {
        Entry e = probe(origin).leaf.get(origin);
        return snapmask & ~(e == null ? 0 : e.using());
    }

    /**
     * Visits the entries of the leaf holding origin chunk {@code key} (from the first one at or
     * after {@code key}) and returns the low key of the next leaf, or -1 after the last leaf, so
     * that a caller can walk the tree leaf by leaf without holding its lock for the whole walk.
     * The entries are decoded copies.
     */
    public long scanLeaf(long key, java.util.function.Consumer<Entry> visit) {
        Path p = probe(key);
        for (Entry e : p.leaf.entries) if (e.origin >= key) visit.accept(e);
        for (int i = p.nodes.length - 1; i >= 0; i--) {
            if (p.idx[i] + 1 < p.nodes[i].count) return p.nodes[i].keys[p.idx[i] + 1];
        }
        return -1;
    }

    // ---------------------------------------------------------------- writes

    /**
     * Before the origin chunk {@code origin} is overwritten: when snapshots still see its data,
     * allocates one COW chunk for all of them and records it as one exception shared by all of
     * them. Returns that chunk (the engine copies the origin chunk there and commits before the
     * origin write) or -1 when no copy is needed.
     */
    public long prepareOriginWrite(long origin) {
        Path p = probe(origin);
        Entry e = p.leaf.get(origin);
        long share = snapmask & ~(e == null ? 0 : e.using());
        if (share == 0) return -1;
        requireSpace("an origin copy-out", insertNeed() + reserve());
        shadowPath(p);
        long data = alloc.allocate();
        addException(p, origin, new Exc(share, data));
        return data;
    }

    /**
     * Before snapshot {@code snap} writes chunk {@code origin}: the chunk it owns alone is written
     * in place; a chunk it shares (with the origin or with other snapshots) is unshared for this
     * snapshot only, into a new COW chunk.
     */
    public SnapWrite prepareSnapshotWrite(long origin, int snap) {
        requireLive(snap);
        long bit = 1L << snap;
        Path p = probe(origin);
        Entry e = p.leaf.get(origin);
        int mine = -1;
        if (e != null) for (int i = 0; i < e.excs.size(); i++) if ((e.excs.get(i).share() & bit) != 0) { mine = i; break; }
        if (mine >= 0 && e.excs.get(mine).share() == bit) return new SnapWrite(e.excs.get(mine).chunk(), IN_PLACE);
        requireSpace("a snapshot write", insertNeed() + reserve());
        shadowPath(p);
        long data = alloc.allocate();
        long from = FROM_ORIGIN;
        if (mine >= 0) {
            Exc old = e.excs.get(mine);
            e.excs.set(mine, new Exc(old.share() & ~bit, old.chunk()));
            from = old.chunk();
        }
        addException(p, origin, new Exc(bit, data));
        return new SnapWrite(data, from);
    }

    private void requireSpace(String what, long need) {
        if (alloc.freeCount() < need) throw new NoSpaceException(what, need, alloc.freeCount());
    }

    // ---------------------------------------------------------------- paths and shadowing

    /** Root-to-leaf path: chunks[0] is the root, chunks[depth] the leaf; idx[i] is the child taken in nodes[i]. */
    private static final class Path {
        final long[] chunks;
        final Node[] nodes;
        final int[] idx;
        Leaf leaf;
        Path(int level) { chunks = new long[level + 1]; nodes = new Node[level]; idx = new int[level]; }
    }

    private Path probe(long key) {
        if (key < 0) throw new IllegalArgumentException("chunk " + key);
        Path p = new Path(level);
        long c = root;
        for (int i = 0; i < level; i++) {
            p.chunks[i] = c;
            Node n = readNode(c);
            p.nodes[i] = n;
            int j = n.childFor(key);
            p.idx[i] = j;
            c = n.children[j];
        }
        p.chunks[level] = c;
        p.leaf = readLeaf(c);
        return p;
    }

    private Node readNode(long c) { return Node.decode(store.read(c), c); }
    private Leaf readLeaf(long c) { return Leaf.decode(store.read(c), c); }

    /** A chunk that may be changed in place: {@code c} itself when fresh, else a new chunk (and {@code c} freed, deferred). */
    private long shadow(long c) {
        if (alloc.isFresh(c)) return c;
        long n = alloc.allocate();
        if (n < 0) throw new IllegalStateException("out of chunks after the space check");
        alloc.free(c);
        return n;
    }

    private void shadowPath(Path p) {
        for (int i = 0; i < p.chunks.length; i++) {
            long c = shadow(p.chunks[i]);
            if (c == p.chunks[i]) continue;
            p.chunks[i] = c;
            if (i == 0) root = c; else p.nodes[i - 1].children[p.idx[i - 1]] = c;
        }
    }

    /** Writes the blocks of the path, except those merged away (chunk -1). */
    private void writePath(Path p) {
        for (int i = 0; i < p.nodes.length; i++) {
            if (p.chunks[i] >= 0) store.write(p.chunks[i], p.nodes[i].encode(chunkBytes, p.chunks[i]));
        }
        int d = p.nodes.length;
        if (p.chunks[d] >= 0) store.write(p.chunks[d], p.leaf.encode(chunkBytes, p.chunks[d]));
    }

    private boolean fits(Leaf l) {
        return l.encodedBytes() <= leafBytes && (l.entries.isEmpty() || l.inRange(l.entries.get(l.entries.size() - 1).origin));
    }

    // ---------------------------------------------------------------- insert and split

    private void addException(Path p, long origin, Exc x) {
        int i = p.leaf.find(origin);
        if (i >= 0) p.leaf.entries.get(i).excs.add(x);
        else p.leaf.entries.add(-i - 1, new Entry(origin, new ArrayList<>(List.of(x))));
        if (fits(p.leaf)) {
            writePath(p);
            return;
        }
        Leaf leaf = p.leaf;
        int n = leaf.entries.size();
        int at = -1;
        for (int k = 0; k < n; k++) if (!leaf.inRange(leaf.entries.get(k).origin)) { at = k; break; }
        if (at < 0) {
            if (n < 2) throw new IllegalStateException("one chunk's exceptions do not fit in a leaf of " + leafBytes + " bytes");
            at = (n + 1) / 2;       // the seed's median split
        }
        long splitKey = leaf.entries.get(at).origin;
        Leaf right = new Leaf(splitKey);
        right.entries.addAll(leaf.entries.subList(at, n));
        leaf.entries.subList(at, n).clear();
        if (!fits(leaf) || !fits(right)) throw new IllegalStateException("leaf halves do not fit: " + leaf.encodedBytes() + " + " + right.encodedBytes());
        long rc = alloc.allocate();
        store.write(rc, right.encode(chunkBytes, rc));
        insertChild(p, p.nodes.length - 1, splitKey, rc);
        writePath(p);
    }

    /** Inserts child {@code child} with low key {@code key} after the path's entry at level {@code lvl}, splitting nodes upward and adding a root when needed. */
    private void insertChild(Path p, int lvl, long key, long child) {
        while (lvl >= 0) {
            Node n = p.nodes[lvl];
            int at = p.idx[lvl] + 1;
            if (n.count < fanout) {
                n.insert(at, key, child);
                return;
            }
            int half = n.count / 2;
            long rkey = n.keys[half];
            Node r = new Node(Node.maxEntries(chunkBytes));
            for (int j = half; j < n.count; j++) r.insert(j - half, j == half ? 0 : n.keys[j], n.children[j]);
            while (n.count > half) n.remove(n.count - 1);
            if (at > half) r.insert(at - half, key, child); else n.insert(at, key, child);
            long rc = alloc.allocate();
            store.write(rc, r.encode(chunkBytes, rc));
            key = rkey;
            child = rc;
            lvl--;
        }
        Node nr = new Node(Node.maxEntries(chunkBytes));
        nr.insert(0, 0, root);
        nr.insert(1, key, child);
        long c = alloc.allocate();
        store.write(c, nr.encode(chunkBytes, c));
        root = c;
        level++;
    }

    // ---------------------------------------------------------------- delete and merge

    /**
     * Clears the deleting bits in the leaf holding {@code key}, then merges: the leaf into its left
     * sibling, or (when it is its parent's first child) the parent into the parent's left sibling,
     * with the children meeting at the seam merged too; a node that lost an entry is merged into
     * its own left sibling in turn, up the path. Returns the next leaf's low key, or -1 after the last.
     */
    private long deleteLeaf(long key) {
        Path p = probe(key);
        int depth = p.nodes.length;
        long upper = -1;
        for (int i = depth - 1; i >= 0; i--) {
            if (p.idx[i] + 1 < p.nodes[i].count) { upper = p.nodes[i].keys[p.idx[i] + 1]; break; }
        }
        boolean dirty = false;
        if ((p.leaf.usingMask() & deleting) != 0) {
            shadowPath(p);
            dirty = true;
            clearBits(p.leaf, deleting);
        }
        int i = p.idx[depth - 1];
        int lost = -1;                          // depth of the path node that lost an entry
        if (i > 0 && fitsPair(p, p.nodes[depth - 1], i - 1, depth)) {
            if (!dirty) { shadowPath(p); dirty = true; }
            mergeBoundary(p, p.nodes[depth - 1], i - 1, depth);
            lost = depth - 1;
        } else if (i == 0 && depth >= 2 && p.idx[depth - 2] > 0 && fitsPair(p, p.nodes[depth - 2], p.idx[depth - 2] - 1, depth - 1)) {
            if (!dirty) { shadowPath(p); dirty = true; }
            mergeBoundary(p, p.nodes[depth - 2], p.idx[depth - 2] - 1, depth - 1);
            lost = depth - 2;
        }
        for (int j = lost; j >= 1 && p.idx[j - 1] > 0 && fitsPair(p, p.nodes[j - 1], p.idx[j - 1] - 1, j); j--) {
            mergeBoundary(p, p.nodes[j - 1], p.idx[j - 1] - 1, j);
        }
        if (dirty) writePath(p);
        if (lost >= 0) shrink();
        return upper;
    }

    /** The current content of the leaf at {@code c}: the path's (possibly unwritten) leaf when it is that one. */
    private Leaf leafAt(Path p, long c) { return c == p.chunks[p.nodes.length] ? p.leaf : readLeaf(c); }

    private Node nodeAt(Path p, long c, int d) { return d < p.nodes.length && c == p.chunks[d] ? p.nodes[d] : readNode(c); }

    private boolean leavesMerge(Leaf a, Leaf b) {
        boolean range = b.entries.isEmpty() || b.entries.get(b.entries.size() - 1).origin - a.base <= 0xffffffffL;
        return range && a.encodedBytes() + b.payloadBytes() <= leafBytes;
    }

    /** Whether children {@code a} and {@code a + 1} of {@code parent} (at depth {@code d}) fit in one block. */
    private boolean fitsPair(Path p, Node parent, int a, int d) {
        if (a < 0 || a + 1 >= parent.count) return false;
        if (d == p.nodes.length) return leavesMerge(leafAt(p, parent.children[a]), leafAt(p, parent.children[a + 1]));
        return nodeAt(p, parent.children[a], d).count + nodeAt(p, parent.children[a + 1], d).count <= fanout;
    }

    /**
     * Merges child {@code a + 1} of {@code parent} (at depth {@code d}) into child {@code a} when
     * they fit, then, for nodes, the two children that now meet at the seam, and so on down.
     * {@code parent} must be fresh (on the shadowed path, or just shadowed by the caller).
     */
    private void mergeBoundary(Path p, Node parent, int a, int d) {
        if (!fitsPair(p, parent, a, d)) return;
        long ca = parent.children[a], cb = parent.children[a + 1];
        int depth = p.nodes.length;
        if (d == depth) {
            Leaf la = leafAt(p, ca), lb = leafAt(p, cb);
            long na = shadow(ca);
            la.entries.addAll(lb.entries);
            if (ca == p.chunks[depth]) p.chunks[depth] = na; else store.write(na, la.encode(chunkBytes, na));
            parent.children[a] = na;
            if (cb == p.chunks[depth]) p.chunks[depth] = -1;
            alloc.free(cb);
            parent.remove(a + 1);
            return;
        }
        Node na = nodeAt(p, ca, d), nb = nodeAt(p, cb, d);
        boolean onPath = ca == p.chunks[d];
        long nc = shadow(ca);
        int seam = na.count - 1;
        for (int q = 0; q < nb.count; q++) na.insert(na.count, q == 0 ? parent.keys[a + 1] : nb.keys[q], nb.children[q]);
        parent.children[a] = nc;
        if (cb == p.chunks[d]) p.chunks[d] = -1;
        alloc.free(cb);
        parent.remove(a + 1);
        mergeBoundary(p, na, seam, d + 1);
        if (!onPath) store.write(nc, na.encode(chunkBytes, nc));
    }

    private void clearBits(Leaf leaf, long mask) {
        for (int k = leaf.entries.size() - 1; k >= 0; k--) {
            Entry e = leaf.entries.get(k);
            ArrayList<Exc> kept = new ArrayList<>(e.excs.size());
            for (Exc x : e.excs) {
                long s = x.share() & ~mask;
                if (s == 0) alloc.free(x.chunk()); else kept.add(new Exc(s, x.chunk()));
            }
            if (kept.isEmpty()) leaf.entries.remove(k);
            else { e.excs.clear(); e.excs.addAll(kept); }
        }
    }

    /** While the root has one child and is above the leaves' parents, the child becomes the root. */
    private void shrink() {
        while (level > 1) {
            Node r = readNode(root);
            if (r.count != 1) return;
            alloc.free(root);
            root = r.children[0];
            level--;
        }
    }

    // ---------------------------------------------------------------- check

    /** What {@link #check} found: problems (empty when clean) and every chunk the tree refers to, with what refers to it. */
    public record CheckResult(List<String> problems, Map<Long, String> reachable, int leaves, int nodes, long exceptions) {
        public boolean clean() { return problems.isEmpty(); }
    }

    /**
     * Checks the whole tree (read-only): block magics and checksums, order and bounds of keys,
     * every leaf at the same depth, share masks naming only live (or being-deleted) snapshots and
     * no snapshot twice per chunk, no chunk used twice, and the allocator marking exactly the
     * reserved chunks, the reachable ones and those freed but not yet durable. O(tree + COW size).
     */
    public CheckResult check() {
        List<String> out = new ArrayList<>();
        Map<Long, String> owner = new HashMap<>();
        int[] counts = new int[2];
        long[] excs = new long[1];
        walk(root, 0, 0, Long.MAX_VALUE, true, out, owner, counts, excs);
        long first = alloc.firstDataChunk();
        for (long c = 0; c < alloc.nrChunks() && out.size() < 50; c++) {
            boolean used = alloc.isAllocated(c);
            boolean ref = owner.containsKey(c);
            boolean freed = alloc.isPendingFree(c) || alloc.isInFlightFree(c);
            if (c < first) { if (!used) out.add("reserved chunk " + c + " is marked free"); continue; }
            if (ref && freed) out.add("chunk " + c + " (" + owner.get(c) + ") is reachable but was freed");
            else if (ref && !used) out.add("chunk " + c + " (" + owner.get(c) + ") is reachable but marked free in the bitmap");
            else if (!ref && !freed && used) out.add("chunk " + c + " is marked in use but nothing refers to it (leaked)");
        }
        return new CheckResult(out, owner, counts[0], counts[1], excs[0]);
    }

    private void walk(long c, int depth, long lo, long hi, boolean lastPath, List<String> out, Map<Long, String> owner, int[] counts, long[] excs) {
        String what = (depth < level ? "node" : "leaf") + " at depth " + depth + " for [" + lo + ", " + (hi == Long.MAX_VALUE ? "end" : hi) + ")";
        if (c < alloc.firstDataChunk() || c >= alloc.nrChunks()) { out.add(what + ": chunk " + c + " is outside the data area"); return; }
        String prev = owner.putIfAbsent(c, what);
        if (prev != null) { out.add("chunk " + c + " used twice: " + prev + " and " + what); return; }
        if (depth < level) {
            Node n;
            try { n = readNode(c); } catch (SharedFormatException e) { out.add(e.getMessage()); return; }
            counts[1]++;
            if (n.count > fanout) out.add("node at chunk " + c + " has " + n.count + " entries, fanout is " + fanout);
            for (int j = 1; j < n.count; j++) {
                if (n.keys[j] <= lo || n.keys[j] >= hi) out.add("node at chunk " + c + ": key[" + j + "] = " + n.keys[j] + " outside (" + lo + ", " + hi + ")");
            }
            for (int j = 0; j < n.count; j++) {
                long clo = j == 0 ? lo : n.keys[j], chi = j + 1 < n.count ? n.keys[j + 1] : hi;
                walk(n.children[j], depth + 1, clo, chi, lastPath && j + 1 == n.count, out, owner, counts, excs);
            }
            return;
        }
        Leaf l;
        try { l = readLeaf(c); } catch (SharedFormatException e) { out.add(e.getMessage()); return; }
        counts[0]++;
        if (l.encodedBytes() > leafBytes) out.add("leaf at chunk " + c + " holds " + l.encodedBytes() + " bytes, more than " + leafBytes);
        long allowed = snapmask | deleting;
        for (Entry e : l.entries) {
            if (e.origin < lo || e.origin >= hi) out.add("leaf at chunk " + c + ": origin chunk " + e.origin + " outside [" + lo + ", " + hi + ")");
            long seen = 0;
            for (Exc x : e.excs) {
                excs[0]++;
                if ((x.share() & ~allowed) != 0) out.add(String.format("leaf at chunk %d, origin %d: share mask 0x%x names snapshots that do not exist (0x%x)", c, e.origin, x.share(), x.share() & ~allowed));
                if ((x.share() & seen) != 0) out.add(String.format("leaf at chunk %d, origin %d: snapshots 0x%x have two exceptions", c, e.origin, x.share() & seen));
                if (deleting != 0 && e.origin < deleteResume && (x.share() & deleting) != 0) out.add("leaf at chunk " + c + ", origin " + e.origin + ": deleted snapshot's bits left behind before the resume key " + deleteResume);
                seen |= x.share();
                String xw = "exception data for origin " + e.origin;
                if (x.chunk() < alloc.firstDataChunk() || x.chunk() >= alloc.nrChunks()) { out.add(xw + ": chunk " + x.chunk() + " outside the data area"); continue; }
                String p2 = owner.putIfAbsent(x.chunk(), xw);
                if (p2 != null) out.add("chunk " + x.chunk() + " used twice: " + p2 + " and " + xw);
            }
        }
    }
}
