package bow.lifecycle;

import java.nio.file.Path;

/** Test helper run in a second JVM: {@code N} read-modify-write increments of the record's boot attempts. */
public final class RecordUpdater {
    public static void main(String[] args) throws Exception {
        Path f = Path.of(args[0]);
        int n = Integer.parseInt(args[1]);
        System.out.println("ready");
        System.out.flush();
        for (int i = 0; i < n; i++) {
            CheckpointRecord.update(f, r -> r.withRetries(r.retries(), r.bootAttempts() + 1));
        }
    }
}
