package bow.snapshot;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class ExceptionMapTest {
    @Test
    void behavesLikeAHashMapUnderRandomPutsAndRemoves() {
        int seeds = TestProps.seeds();
        long base = new Random().nextLong();
        for (int s = 0; s < seeds; s++) {
            long seed = base + s * 0x9E3779B97F4A7C15L;
            Random r = new Random(seed);
            ExceptionMap m = new ExceptionMap(4);
            Map<Long, Long> ref = new HashMap<>();
            int keySpace = 50 + r.nextInt(5000);
            for (int i = 0; i < 20000; i++) {
                long k = r.nextInt(keySpace) * (r.nextBoolean() ? 1L : 1L << 33);
                if (r.nextInt(700) == 0) m.ensureCapacity(m.size() + r.nextInt(3000));   // as a load presizes it
                if (r.nextInt(15000) == 0) {                                                // as a commit empties it
                    m.clear();
                    ref.clear();
                }
                if (r.nextInt(3) == 0) {
                    m.remove(k);
                    ref.remove(k);
                } else {
                    long v = 1 + r.nextInt(1 << 30);
                    m.put(k, v);
                    ref.put(k, v);
                }
                if (i % 1999 == 0) {
                    assertEquals(ref.size(), m.size(), "seed " + seed);
                    for (Map.Entry<Long, Long> e : ref.entrySet()) assertEquals(e.getValue(), m.get(e.getKey()), "seed " + seed);
                }
            }
            assertEquals(ref.size(), m.size(), "seed " + seed);
            for (long k = 0; k < keySpace; k++) {
                assertEquals(ref.getOrDefault(k, 0L), m.get(k), "seed " + seed);
                assertEquals(ref.getOrDefault(k << 33, 0L), m.get(k << 33), "seed " + seed);   // keys and values kept apart
            }
        }
    }

    @Test
    void rejectsNewChunkZero() {
        assertThrows(IllegalArgumentException.class, () -> new ExceptionMap().put(5, 0));
    }
}
