package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.snapshot.PersistentFormat.OriginRecord;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/**
 * Does this COW belong to this origin? Checked before anything is served or merged (see
 * docs/FORMATS.md, "origin record"):
 * <ol>
 * <li>every exception's old_chunk lies inside the origin (always, also for kernel-made COWs);</li>
 * <li>the origin's size equals the size recorded at checkpoint start (bow-made COWs);</li>
 * <li>the fingerprint: a CRC-32C over a few sampled origin chunks as they were at checkpoint
 *     start. The snapshot view (the COW's copy where a chunk has an exception, the origin
 *     elsewhere) still shows exactly that content as long as the snapshot was never written
 *     to and no merge has begun, so only then is it checked; a writable snapshot drops the
 *     fingerprint from the header before its first write, a merge sets its marker first.</li>
 * </ol>
 */
public final class OriginCheck {
    private OriginCheck() {}

    /** A fingerprint of the snapshot's content, for a store with no exceptions yet (checkpoint start). */
    public static OriginRecord record(BlockDevice origin, int chunkSectors, boolean fingerprint) throws IOException {
        int cb = chunkSectors * PersistentFormat.SECTOR;
        if (!fingerprint) return new OriginRecord(origin.size(), 0, 0);
        long[] chunks = PersistentFormat.fingerprintChunks(origin.size(), cb, PersistentFormat.FINGERPRINT_SAMPLES);
        return new OriginRecord(origin.size(), chunks.length, fingerprint(origin, null, cb, chunks));
    }

    /** CRC-32C over (chunk index, content clipped at the origin's end) of each sampled chunk, through the snapshot view. */
    static int fingerprint(BlockDevice origin, PersistentStore store, int cb, long[] chunks) throws IOException {
        CRC32C crc = new CRC32C();
        ByteBuffer idx = ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (long c : chunks) {
            long at = c * cb;
            int len = (int) Math.min(cb, origin.size() - at);
            ByteBuffer buf = ByteBuffer.allocate(len);
            long e = store == null ? 0 : store.lookup(c);
            if (e != 0) store.cow().read(e * cb, buf);
            else origin.read(at, buf);
            idx.clear().putLong(c).flip();
            crc.update(idx);
            crc.update(buf.array(), 0, len);
        }
        return (int) crc.getValue();
    }

    /** Throws {@link WrongOriginException} with the reason when {@code origin} is not the COW's origin. */
    public static void verify(BlockDevice origin, PersistentStore store) throws IOException {
        int cb = store.chunkBytes();
        OriginRecord r = store.originRecord();
        if (r != null && r.originBytes() != origin.size()) {
            throw new WrongOriginException("the snapshot on the COW was taken of a " + r.originBytes()
                    + "-byte origin, but this origin has " + origin.size() + " bytes: wrong origin device? Nothing was changed");
        }
        long maxOld = store.maxOldChunk();
        if (maxOld >= 0 && maxOld * (long) cb >= origin.size()) {
            throw new WrongOriginException("the COW holds origin chunk " + maxOld + " (at byte " + maxOld * (long) cb
                    + "), past the end of this " + origin.size() + "-byte origin: wrong origin device? Nothing was changed");
        }
        if (r != null && r.samples() > 0 && !store.isMerging()) {
            long[] chunks = PersistentFormat.fingerprintChunks(origin.size(), cb, r.samples());
            int now = fingerprint(origin, store, cb, chunks);
            if (chunks.length != r.samples() || now != r.fingerprint()) {
                throw new WrongOriginException(String.format(java.util.Locale.ROOT,
                        "this origin does not hold the data the COW's snapshot was taken of (fingerprint of %d sampled chunks "
                                + "is %08x, the COW recorded %08x at checkpoint start): wrong origin device? Nothing was changed",
                        chunks.length, now, r.fingerprint()));
            }
        }
    }
}
