package bow.ctl;

import bow.control.Framing;
import bow.proto.RangesReply;
import bow.proto.Response;
import bow.proto.SnapshotCreateReply;
import bow.proto.SnapshotInfo;
import bow.proto.SnapshotListReply;
import bow.proto.StatusReply;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;

/**
 * Entry point of {@code bin/bowctl}: answers the common commands on the fast path
 * ({@link FastPath}) before any picocli class is loaded, else runs {@link Bowctl}.
 * Kept free of picocli references, so that loading it loads nothing more.
 */
public final class Main {
    private Main() {}

    /** Set by the launcher on the call that writes the class-data archive (see {@link #train}). */
    static final String TRAIN_PROPERTY = "bowctl.cds.train";

    public static void main(String[] args) {
        Integer fast = FastPath.tryRun(args);
        int code = fast != null ? fast : Bowctl.run(args);
        if (Boolean.getBoolean(TRAIN_PROPERTY)) train();
        System.exit(code);
    }

    /**
     * On the call that writes the launcher's class-data archive, whatever command it was: decode
     * an answer of every kind the daemon sends, so that the archive holds the protobuf classes
     * (and the descriptors' code) that reading them loads, and not only those of the first command.
     */
    static void train() {
        Response[] answers = {
            Response.newBuilder().setCode(Response.Code.OK).setMessage("ok").setStatus(StatusReply.newBuilder()
                    .setMode("bow").setState("1 CHECKPOINT").putDetails("io_flushes", "0")).build(),
            Response.newBuilder().setCode(Response.Code.OK).setSnapshotList(SnapshotListReply.newBuilder()
                    .addSnapshots(SnapshotInfo.newBuilder().setId(0).setName("a"))).build(),
            Response.newBuilder().setCode(Response.Code.OK).setSnapshotCreated(SnapshotCreateReply.newBuilder().setId(0)).build(),
            Response.newBuilder().setCode(Response.Code.OK).setRanges(RangesReply.getDefaultInstance()).build(),
            Response.newBuilder().setCode(Response.Code.INVALID_STATE).setMessage("no").build(),
        };
        try {
            for (Response r : answers) {
                ByteArrayOutputStream b = new ByteArrayOutputStream();
                Framing.write(b, r);
                Response back = Framing.read(new ByteArrayInputStream(b.toByteArray()), Response.parser());
                if (back == null || back.getStatus().getDetailsCount() != r.getStatus().getDetailsCount()) throw new IOException("round trip");
            }
        } catch (IOException e) {
            System.err.println("bowctl: class-data archive training: " + e);   // only the archive is poorer
        }
    }
}
