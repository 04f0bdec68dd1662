package bow.ctl;

/**
 * Entry point of {@code bin/bowctl}: answers {@code needs-checkpoint} on the fast path
 * ({@link FastPath}) before any picocli class is loaded, else runs {@link Bowctl}.
 * Kept free of picocli references, so that loading it loads nothing more.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        Integer fast = FastPath.tryRun(args);
        if (fast != null) System.exit(fast);
        Bowctl.main(args);
    }
}
