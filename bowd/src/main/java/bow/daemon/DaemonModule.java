package bow.daemon;

import bow.blockdev.BlockDevice;
import bow.control.ControlServer;
import bow.engine.ModeEngine;
import bow.engine.SnapshotEngine;
import bow.nbd.NbdServer;
import dagger.Module;
import dagger.Provides;

import javax.inject.Singleton;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/** How the daemon's parts are made from the engine and the configuration. */
@Module
final class DaemonModule {
    private DaemonModule() {}

    @Provides
    @Singleton
    static NbdServer nbdServer(ModeEngine engine, DaemonConfig config) {
        NbdServer.Options options = new NbdServer.Options().anyTcpAddress(config.tcpAny())
                .clientTimeout(config.clientTimeout()).maxRequestMemory(config.maxRequestMemory());
        String alias = config.exportName() == null || config.exportName().isEmpty() ? null : config.exportName();
        String base = engine.mode() + " mode on " + config.device();
        options.describeOthers(name -> base + (name.isEmpty() || name.equals(alias) ? "" : " (" + name + " view)"));
        Optional<SnapshotEngine> snapshots = engine.snapshots();
        if (snapshots.isPresent()) {
            // Snapshots come and go: the server asks the engine at each handshake.
            if (alias != null && alias.startsWith("snapshot-")) {
                throw new IllegalArgumentException("--export-name " + alias + ": names starting with 'snapshot-' are the snapshots' exports in "
                        + engine.mode() + " mode");
            }
            SnapshotEngine snaps = snapshots.get();
            return new NbdServer(() -> withAlias(engine.exports(), alias), snaps::readOnlyExports, options);
        }
        Map<String, BlockDevice> exports = engine.exports();
        if (alias != null && exports.containsKey(alias)) {
            throw new IllegalArgumentException("--export-name " + alias + " is already an export of " + engine.mode() + " mode");
        }
        if ("persistent".equals(engine.mode()) && !config.snapshotWritable()) {
            options.readOnlyExport("snapshot");
        }
        return new NbdServer(withAlias(exports, alias), options);
    }

    /** Clients that ask for the alias get the default export; clients that ask for "" still do too. */
    private static Map<String, BlockDevice> withAlias(Map<String, BlockDevice> exports, String alias) {
        if (alias == null) return exports;
        Map<String, BlockDevice> m = new LinkedHashMap<>(exports);
        m.putIfAbsent(alias, exports.get(""));
        return m;
    }

    @Provides
    @Singleton
    static ControlServer controlServer(ModeEngine engine, NbdServer nbd, DaemonConfig config, Daemon.Stopper stopper) {
        return new ControlServer(engine, nbd::openConnections, ControlServer.defaultPolicy(config.allowUids()), stopper::stop,
                config.clientTimeout(), ControlServer.MAX_CLIENTS);
    }

    @Provides
    @Singleton
    static Daemon.Stopper stopper() {
        return new Daemon.Stopper();
    }
}
