package bow.daemon;

import picocli.CommandLine;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** The project version (from the build: bow/version.properties), for {@code bowd --version} and {@code bowctl --version}. */
public final class BowVersion implements CommandLine.IVersionProvider {
    public static String version() {
        try (InputStream in = BowVersion.class.getResourceAsStream("/bow/version.properties")) {
            if (in == null) return "unknown";
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version", "unknown");
        } catch (IOException e) {
            return "unknown";
        }
    }

    @Override
    public String[] getVersion() {
        return new String[] {"${COMMAND-NAME} " + version()};
    }
}
