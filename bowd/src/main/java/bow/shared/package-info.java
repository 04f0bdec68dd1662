/**
 * Shared mode's store: one COW shared by up to 64 snapshots (issue 9). Format in docs/FORMATS.md
 * ("shared mode").
 *
 * <p>What exists is the pure logic, with no I/O: {@link bow.shared.SharedFormat} (layout, the
 * double-buffered header with its snapshot table), {@link bow.shared.Leaf} and
 * {@link bow.shared.Node} (tree block codecs), {@link bow.shared.BitmapAllocator} (chunk
 * allocation with deferred frees and per-copy dirty tracking) and {@link bow.shared.SharedTree}
 * (the copy-on-write B-tree: lookups, origin copy-out, snapshot unshare, split, resumable delete
 * with merges, check); {@link bow.shared.SharedStore} (the store on the COW device: open, format,
 * a bounded cache of tree blocks, group commit in the order docs/FORMATS.md fixes) and
 * {@link bow.shared.SharedEngine} (the {@code ModeEngine} and {@code SnapshotEngine}: origin and
 * snapshot exports, per-chunk claims, create, delete with background reclaim, online rollback
 * recorded in the header and resumed at open after a crash).
 * {@link bow.shared.SharedEngine#check} and {@link bow.shared.SharedCheck} are the read-only fsck
 * behind {@code bowctl shared check}; {@link bow.shared.SharedDump} is behind {@code shared dump}.
 */
package bow.shared;
