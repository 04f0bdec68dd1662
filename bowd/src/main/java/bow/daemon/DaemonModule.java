package bow.daemon;

import bow.control.ControlServer;
import bow.engine.ModeEngine;
import bow.nbd.NbdServer;
import dagger.Module;
import dagger.Provides;

import javax.inject.Singleton;

/** How the daemon's parts are made from the engine and the configuration. */
@Module
final class DaemonModule {
    private DaemonModule() {}

    @Provides
    @Singleton
    static NbdServer nbdServer(ModeEngine engine, DaemonConfig config) {
        NbdServer.Options options = new NbdServer.Options();
        for (String name : engine.exports().keySet()) {
            options.description(name, engine.mode() + " mode on " + config.device()
                    + (name.isEmpty() ? "" : " (" + name + " view)"));
        }
        if ("persistent".equals(engine.mode()) && !config.snapshotWritable()) {
            options.readOnlyExport("snapshot");
        }
        return new NbdServer(engine.exports(), options);
    }

    @Provides
    @Singleton
    static ControlServer controlServer(ModeEngine engine, NbdServer nbd, DaemonConfig config, Daemon.Stopper stopper) {
        return new ControlServer(engine, nbd::openConnections, ControlServer.defaultPolicy(config.allowUids()), stopper::stop);
    }

    @Provides
    @Singleton
    static Daemon.Stopper stopper() {
        return new Daemon.Stopper();
    }
}
