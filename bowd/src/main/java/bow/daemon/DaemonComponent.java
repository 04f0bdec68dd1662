package bow.daemon;

import bow.engine.ModeEngine;
import dagger.BindsInstance;
import dagger.Component;

import javax.inject.Singleton;

/** Wiring of a running daemon: engine and configuration in, servers out. */
@Singleton
@Component(modules = DaemonModule.class)
interface DaemonComponent {
    Daemon daemon();

    @Component.Builder
    interface Builder {
        @BindsInstance
        Builder engine(ModeEngine engine);

        @BindsInstance
        Builder config(DaemonConfig config);

        DaemonComponent build();
    }
}
