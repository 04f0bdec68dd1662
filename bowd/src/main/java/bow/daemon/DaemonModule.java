package bow.daemon;

import bow.blockdev.BlockDevice;
import bow.control.ControlServer;
import bow.engine.ModeEngine;
import bow.nbd.NbdServer;
import dagger.Module;
import dagger.Provides;

import javax.inject.Singleton;
import java.util.LinkedHashMap;
import java.util.Map;

/** How the daemon's parts are made from the engine and the configuration. */
@Module
final class DaemonModule {
    private DaemonModule() {}

    @Provides
    @Singleton
    static NbdServer nbdServer(ModeEngine engine, DaemonConfig config) {
        NbdServer.Options options = new NbdServer.Options().anyTcpAddress(config.tcpAny())
                .clientTimeout(config.clientTimeout()).maxRequestMemory(config.maxRequestMemory());
        Map<String, BlockDevice> exports = new LinkedHashMap<>(engine.exports());
        String alias = config.exportName();
        if (alias != null && !alias.isEmpty()) {
            // Clients that ask for the name get the default export; clients that ask for "" still do too.
            if (exports.containsKey(alias)) throw new IllegalArgumentException("--export-name " + alias + " is already an export of " + engine.mode() + " mode");
            exports.put(alias, engine.exports().get(""));
        }
        for (String name : exports.keySet()) {
            options.description(name, engine.mode() + " mode on " + config.device()
                    + (name.isEmpty() || name.equals(alias) ? "" : " (" + name + " view)"));
        }
        if ("persistent".equals(engine.mode()) && !config.snapshotWritable()) {
            options.readOnlyExport("snapshot");
        }
        return new NbdServer(exports, options);
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
