package bow.daemon;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Set;

/** Everything the daemon was told on its command line, after defaults. */
public record DaemonConfig(
        String mode,
        Path device,
        Path cow,
        int blockSize,
        int chunkSizeSectors,
        boolean overflow,
        boolean snapshotWritable,
        Path nbdSocket,
        InetSocketAddress tcp,
        boolean tcpAny,
        boolean stdin,
        Path controlSocket,
        Set<Integer> allowUids,
        String exportName,
        /** Deadline for NBD handshakes, requests and replies, and for control requests. */
        Duration clientTimeout,
        /** Daemon-wide budget for NBD request payloads in memory, in bytes. */
        long maxRequestMemory) {

    /** With the default client timeout (10 s) and payload budget (a quarter of the heap, at least 64 MiB). */
    public DaemonConfig(String mode, Path device, Path cow, int blockSize, int chunkSizeSectors, boolean overflow,
                        boolean snapshotWritable, Path nbdSocket, InetSocketAddress tcp, boolean tcpAny, boolean stdin,
                        Path controlSocket, Set<Integer> allowUids, String exportName) {
        this(mode, device, cow, blockSize, chunkSizeSectors, overflow, snapshotWritable, nbdSocket, tcp, tcpAny, stdin,
                controlSocket, allowUids, exportName, bow.nbd.NbdServer.DEFAULT_CLIENT_TIMEOUT,
                bow.nbd.NbdServer.defaultRequestMemory());
    }
}
