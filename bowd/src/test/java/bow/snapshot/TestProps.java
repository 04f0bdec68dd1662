package bow.snapshot;

/** Iteration counts from system properties (surefire passes them; blank or unset means the default). */
final class TestProps {
    private TestProps() {}

    static int intProp(String name, int def) {
        String v = System.getProperty(name);
        if (v == null || v.isBlank()) return def;
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            return def;
        }
    }

    static int seeds() { return intProp("bow.test.seeds", 8); }

    static int crashes() { return intProp("bow.test.crashes", 30); }
}
