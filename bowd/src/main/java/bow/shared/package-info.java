/**
 * Shared mode's store: one COW shared by up to 64 snapshots (issue 9). Format in docs/FORMATS.md
 * ("shared mode").
 *
 * <p>What exists is the pure logic, with no I/O: {@link bow.shared.SharedFormat} (layout, the
 * double-buffered header with its snapshot table), {@link bow.shared.Leaf} and
 * {@link bow.shared.Node} (tree block codecs), {@link bow.shared.BitmapAllocator} (chunk
 * allocation with deferred frees and per-copy dirty tracking) and {@link bow.shared.SharedTree}
 * (the copy-on-write B-tree: lookups, origin copy-out, snapshot unshare, split, resumable delete
 * with merges, check). Not yet: the store doing the I/O over the COW device (commit order as in
 * FORMATS.md, group commit, a bounded cache of decoded blocks implementing
 * {@link bow.shared.ChunkStore}), the {@code ModeEngine}, rollback, and the CLI.
 */
package bow.shared;
