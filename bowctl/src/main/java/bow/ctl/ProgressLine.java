package bow.ctl;

import bow.restore.ProgressListener;

import java.io.PrintWriter;

/** A carriage-return progress line on a terminal; silent when not on one (scripts, logs). */
final class ProgressLine implements ProgressListener {
    private final PrintWriter out;
    private final boolean enabled;
    private long lastNanos;
    private int lastLength;

    ProgressLine(PrintWriter out) {
        this(out, System.console() != null);
    }

    ProgressLine(PrintWriter out, boolean enabled) {
        this.out = out;
        this.enabled = enabled;
    }

    @Override
    public void progress(String phase, long done, long total) {
        if (!enabled) return;
        long now = System.nanoTime();
        boolean finished = total >= 0 && done >= total;
        if (!finished && now - lastNanos < 100_000_000L) return; // redraw at most ten times a second
        lastNanos = now;
        String line = total > 0
                ? String.format("%s: %s / %s (%d%%)", phase, mib(done), mib(total), done * 100 / total)
                : String.format("%s: %s", phase, mib(done));
        out.print("\r" + line + " ".repeat(Math.max(0, lastLength - line.length())));
        out.flush();
        lastLength = line.length();
    }

    /** Clears the line before the summary is printed. */
    void clear() {
        if (!enabled || lastLength == 0) return;
        out.print("\r" + " ".repeat(lastLength) + "\r");
        out.flush();
        lastLength = 0;
    }

    private static String mib(long bytes) {
        return String.format("%.1f MiB", bytes / 1048576.0);
    }
}
