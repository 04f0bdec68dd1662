package bow.ctl;

import bow.blockdev.FileBlockDevice;
import bow.bowmode.BowEngine;
import bow.control.ControlClient;
import bow.daemon.Daemon;
import bow.daemon.DaemonConfig;
import bow.daemon.PathDetailsEngine;
import bow.engine.ModeEngine;
import bow.proto.RangesRequest;
import bow.proto.Request;
import bow.proto.Response;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static org.junit.jupiter.api.Assertions.*;

/** {@code bowctl ranges} pages through a table far larger than one 1 MiB control reply. */
class RangesPagingTest {
    @TempDir Path dir;

    @Test
    void rangesPrintsAQuarterMillionRanges() throws Exception {
        int blocks = 1 << 18;   // 512-byte blocks, a 128 MiB sparse image
        Path img = dir.resolve("dev.img");
        FileBlockDevice.createSparse(img, (long) blocks * 512);
        FileBlockDevice dev = FileBlockDevice.open(img, false);
        BowEngine e = BowEngine.open(dev, img.toString(), 512);
        for (long b = 1; b < blocks; b += 2) e.discard(b * 512, 512);   // state 0: every other block free
        List<ModeEngine.RangeRecord> expected = e.ranges();
        assertEquals(blocks, expected.size());
        DaemonConfig cfg = new DaemonConfig("bow", img, null, 512, 0, false, false, dir.resolve("nbd.sock"), null, false, false,
                dir.resolve("control.sock"), Set.of(), null);
        Daemon d = Daemon.create(new PathDetailsEngine(e, img, null), cfg);
        d.start(null);
        String ctl = dir.resolve("control.sock").toString();
        try {
            OfflineCommandsTest.Run r = bowctl("ranges", "--json", "--control", ctl);
            assertEquals(0, r.code(), r.err());
            Matcher m = Pattern.compile("\\{\"offset\":(\\d+),\"length\":(\\d+),\"type\":\"(\\w+)\"}").matcher(r.out());
            int i = 0;
            while (m.find()) {
                ModeEngine.RangeRecord x = expected.get(i++);
                assertEquals(x.offset(), Long.parseLong(m.group(1)), "range " + i);
                assertEquals(x.length(), Long.parseLong(m.group(2)), "range " + i);
                assertEquals(x.type(), m.group(3), "range " + i);
            }
            assertEquals(blocks, i, "every range once");
            assertTrue(r.out().startsWith("[{") && r.out().trim().endsWith("}]"), "one JSON array");

            OfflineCommandsTest.Run text = bowctl("ranges", "--control", ctl);
            assertEquals(0, text.code(), text.err());
            assertEquals(blocks + 1, text.out().split("\n").length, "a header and one line per range");

            // An unpaged request (an older bowctl) gets a clear refusal, not a reply it cannot read.
            try (ControlClient c = ControlClient.connect(dir.resolve("control.sock"))) {
                Response old = c.call(Request.newBuilder().setRanges(RangesRequest.getDefaultInstance()).build());
                assertEquals(Response.Code.BAD_REQUEST, old.getCode());
                assertTrue(old.getMessage().contains(blocks + " ranges do not fit in one reply"), old.getMessage());
                // A page asked from the middle of a range starts there.
                Response mid = c.call(Request.newBuilder().setRanges(RangesRequest.newBuilder().setFromOffset(1000).setLimit(3)).build());
                assertEquals(3, mid.getRanges().getRangesCount());
                assertEquals(1000, mid.getRanges().getRanges(0).getOffset());
                assertEquals(24, mid.getRanges().getRanges(0).getLength());
                assertTrue(mid.getRanges().getMore());
                assertEquals(2048, mid.getRanges().getNextOffset());
            }
        } finally {
            d.requestStop();
            d.stop();
        }
    }
}
