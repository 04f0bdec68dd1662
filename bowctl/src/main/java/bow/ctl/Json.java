package bow.ctl;

import java.util.Iterator;
import java.util.Map;

/** Just enough JSON writing for bowctl's --json output (no dependency for it). */
final class Json {
    private Json() {}

    static String quote(String s) {
        return bow.restore.LogInspector.str(s);
    }

    /** An object from alternating keys and values (String, Number, Boolean, Map or a raw-JSON {@link Raw}). */
    static String object(Map<String, ?> fields) {
        StringBuilder b = new StringBuilder("{");
        Iterator<? extends Map.Entry<String, ?>> it = fields.entrySet().iterator();
        while (it.hasNext()) {
            Map.Entry<String, ?> e = it.next();
            b.append(quote(e.getKey())).append(':').append(value(e.getValue()));
            if (it.hasNext()) b.append(',');
        }
        return b.append('}').toString();
    }

    @SuppressWarnings("unchecked")
    static String value(Object v) {
        if (v == null) return "null";
        if (v instanceof Raw r) return r.json();
        if (v instanceof Number || v instanceof Boolean) return v.toString();
        if (v instanceof Map<?, ?> m) return object((Map<String, ?>) m);
        return quote(v.toString());
    }

    record Raw(String json) {}
}
