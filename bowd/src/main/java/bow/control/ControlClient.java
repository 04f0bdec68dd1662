package bow.control;

import bow.proto.Request;
import bow.proto.Response;

import java.io.Closeable;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;

/** One connection to bowd's control socket. */
public final class ControlClient implements Closeable {
    private final SocketChannel channel;

    /** Thrown when there is no daemon listening on the socket. */
    public static final class NotRunningException extends IOException {
        public NotRunningException(String message, Throwable cause) { super(message, cause); }
    }

    /** Thrown when the socket is there but this user may not connect to it (file permissions). */
    public static final class PermissionDeniedException extends IOException {
        public PermissionDeniedException(String message, Throwable cause) { super(message, cause); }
    }

    private ControlClient(SocketChannel channel) { this.channel = channel; }

    public static ControlClient connect(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            ch.close();
            // EACCES from connect(2): a daemon may well be running, but not for us.
            if (Files.exists(socket) && !Files.isWritable(socket) || String.valueOf(e.getMessage()).contains("Permission denied")) {
                throw new PermissionDeniedException("no permission to use the control socket " + socket
                        + " (" + e.getMessage() + "): run as root or as the daemon's user", e);
            }
            throw new NotRunningException("bowd is not running (no control socket at " + socket + ": " + e.getMessage() + ")", e);
        }
        return new ControlClient(ch);
    }

    public Response call(Request request) throws IOException {
        try {
            Framing.write(Channels.newOutputStream(channel), request);
        } catch (IOException e) {
            // The daemon answers some peers (a refused uid, too many clients) at once and hangs
            // up: our write then fails with EPIPE, but its answer is waiting to be read.
            Response early = readQuietly();
            if (early != null) return early;
            throw e;
        }
        Response r = Framing.read(Channels.newInputStream(channel), Response.parser());
        if (r == null) throw new IOException("bowd closed the control connection without answering");
        return r;
    }

    private Response readQuietly() {
        try {
            return Framing.read(Channels.newInputStream(channel), Response.parser());
        } catch (IOException e) {
            return null;
        }
    }

    @Override
    public void close() throws IOException { channel.close(); }
}
