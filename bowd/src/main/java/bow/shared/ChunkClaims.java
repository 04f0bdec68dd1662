package bow.shared;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;

/**
 * Which origin chunks a request is working on. A request claims its whole run of chunks at
 * once or waits, holding nothing, for the conflicting claim to end (so no deadlock), then tries
 * again. A claim lasts until the request's last I/O on those chunks has returned and the commit
 * protecting it is durable: a second request on the same chunk never sees a tree change that is
 * only in memory, nor a copy-out still in flight.
 */
final class ChunkClaims {
    /** One request's claim on origin chunks [first, last]. */
    static final class Claim implements AutoCloseable {
        private final ChunkClaims owner;
        final long first, last;
        private final CompletableFuture<Void> done = new CompletableFuture<>();
        private Claim(ChunkClaims owner, long first, long last) { this.owner = owner; this.first = first; this.last = last; }
        @Override public void close() { owner.release(this); }
    }

    private final TreeMap<Long, Claim> byFirst = new TreeMap<>();

    /** Claims chunks [first, last], waiting for conflicting claims to end. */
    Claim acquire(long first, long last) {
        while (true) {
            Claim conflict;
            synchronized (this) {
                conflict = conflict(first, last);
                if (conflict == null) {
                    Claim c = new Claim(this, first, last);
                    byFirst.put(first, c);
                    return c;
                }
            }
            conflict.done.join();
        }
    }

    private Claim conflict(long first, long last) {
        Map.Entry<Long, Claim> e = byFirst.floorEntry(last);
        return e != null && e.getValue().last >= first ? e.getValue() : null;
    }

    private void release(Claim c) {
        synchronized (this) {
            if (byFirst.get(c.first) == c) byFirst.remove(c.first);
        }
        c.done.complete(null);
    }

    synchronized int size() { return byFirst.size(); }
}
