package bow.restore;

import java.util.Map;
import java.util.TreeMap;

/** Disjoint half-open sector intervals; adding merges, so an overlap test is one floor lookup. */
final class IntervalSet {
    private final TreeMap<Long, Long> starts = new TreeMap<>();

    boolean overlaps(long start, long end) {
        Map.Entry<Long, Long> f = starts.floorEntry(start);
        if (f != null && f.getValue() > start) return true;
        Long next = starts.ceilingKey(start);
        return next != null && next < end;
    }

    /** Whether any interval of {@code other} overlaps this set. */
    boolean overlaps(IntervalSet other) {
        for (Map.Entry<Long, Long> e : other.starts.entrySet()) {
            if (overlaps(e.getKey(), e.getValue())) return true;
        }
        return false;
    }

    void add(long start, long end) {
        Map.Entry<Long, Long> f = starts.floorEntry(start);
        if (f != null && f.getValue() >= start) {
            start = f.getKey();
            end = Math.max(end, f.getValue());
            starts.remove(f.getKey());
        }
        Map.Entry<Long, Long> n;
        while ((n = starts.ceilingEntry(start)) != null && n.getKey() <= end) {
            end = Math.max(end, n.getValue());
            starts.remove(n.getKey());
        }
        starts.put(start, end);
    }

    void clear() { starts.clear(); }
}
