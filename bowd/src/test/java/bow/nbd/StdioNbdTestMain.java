package bow.nbd;

import bow.blockdev.MemoryBlockDevice;

import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Map;

/**
 * Test-only entry point, started by NBD tools as a subprocess: serves a fresh
 * memory device of the given size either on a socket-activation listener
 * ({@code nbdinfo -- [ CMD ]}) or on a connected socket on standard input
 * (libnbd's {@code connect_command}).
 */
public final class StdioNbdTestMain {
    private StdioNbdTestMain() {}

    public static void main(String[] args) throws Exception {
        NbdServer server = new NbdServer(Map.of("", new MemoryBlockDevice(Integer.parseInt(args[0]))),
                new NbdServer.Options());
        ServerSocketChannel listener = SocketActivation.listener();
        if (listener != null) {
            server.listen(listener);
            Thread.currentThread().join(); // until the tool kills us
        }
        SocketChannel sc = SocketActivation.connectedStdin();
        if (sc == null) {
            System.err.println("no socket-activation listener and standard input is not a socket");
            System.exit(2);
        }
        try {
            server.serve(sc);
        } finally {
            server.close();
        }
    }
}
