package bow.nbd;

import com.sun.jna.LastErrorException;

import java.io.IOException;
import java.nio.channels.Channel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;

/**
 * Channels a parent process hands to bowd: a listening socket by systemd-style
 * socket activation (LISTEN_PID/LISTEN_FDS, descriptor 3; used by
 * {@code nbdinfo -- [ CMD ]}, {@code nbdcopy -- [ CMD ]}), or a connected socket
 * on standard input ({@code nbd_connect_command}, inetd style).
 *
 * <p>The JDK adopts only descriptor 0 ({@link System#inheritedChannel()}, which
 * is computed once per process), so call one of these before anything else asks
 * for the inherited channel.
 */
public final class SocketActivation {
    private static final int SD_LISTEN_FDS_START = 3;

    private SocketActivation() {}

    private static final class Libc {
        static {
            bow.blockdev.LinuxNative.registerLibc(Libc.class);
        }

        static native int dup2(int oldFd, int newFd) throws LastErrorException;
    }

    /** The socket-activation listener meant for this process, or null when there is none. */
    public static ServerSocketChannel listener() throws IOException {
        String pid = System.getenv("LISTEN_PID");
        String fds = System.getenv("LISTEN_FDS");
        if (pid == null || fds == null) return null;
        try {
            if (Long.parseLong(pid.trim()) != ProcessHandle.current().pid() || Integer.parseInt(fds.trim()) < 1) {
                return null;
            }
        } catch (NumberFormatException e) {
            throw new IOException("malformed LISTEN_PID/LISTEN_FDS: " + pid + "/" + fds);
        }
        try {
            Libc.dup2(SD_LISTEN_FDS_START, 0);
        } catch (LastErrorException e) {
            throw new IOException("cannot adopt socket-activation descriptor 3: errno " + e.getErrorCode(), e);
        }
        Channel ch = System.inheritedChannel();
        if (ch instanceof ServerSocketChannel s) return s;
        throw new IOException("descriptor 3 from socket activation is not a listening stream socket (" + ch + ")");
    }

    /** A connected socket on standard input, or null. */
    public static SocketChannel connectedStdin() throws IOException {
        return System.inheritedChannel() instanceof SocketChannel s ? s : null;
    }
}
