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
 * snapshot exports, per-chunk claims, create, delete with background reclaim, online rollback).
 * {@link bow.shared.SharedEngine#check} is the read-only fsck behind {@code bowctl shared check}.
 * Not yet here: the daemon and CLI wiring (bowd --mode shared, bowctl snapshot/shared), dump, and
 * an on-disk record of a running rollback (re-run it after a crash).
 */
package bow.shared;
