package bow.daemon;

import java.net.InetSocketAddress;
import java.nio.file.Path;
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
        String exportName) {
}
