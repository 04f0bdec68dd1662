package bow.nbd;

import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongToIntFunction;

import static bow.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A minimal hand-written NBD client for protocol tests: raw messages, no cleverness. */
final class NbdTestClient implements Closeable {
    final SocketChannel ch;
    int handshakeFlags;
    boolean structured;
    long exportSize;
    int transmissionFlags;

    record OptionReply(int option, int type, byte[] data) {
        ByteBuffer buf() { return ByteBuffer.wrap(data); }
    }

    /** A whole reply: simple, or one structured chunk. */
    record Reply(boolean isStructured, int flags, int chunkType, long cookie, int error, byte[] data) {}

    private NbdTestClient(SocketChannel ch) { this.ch = ch; }

    static NbdTestClient connect(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        return new NbdTestClient(ch);
    }

    /** Reads the server greeting and answers with the client flags. */
    void greet(int clientFlags) throws IOException {
        ByteBuffer b = read(18);
        assertEquals(NBDMAGIC, b.getLong());
        assertEquals(IHAVEOPT, b.getLong());
        handshakeFlags = b.getShort() & 0xffff;
        write(ByteBuffer.allocate(4).putInt(clientFlags).flip());
    }

    void sendOption(int opt, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(16 + data.length);
        b.putLong(IHAVEOPT).putInt(opt).putInt(data.length).put(data).flip();
        write(b);
    }

    OptionReply readOptionReply() throws IOException {
        ByteBuffer h = read(20);
        assertEquals(OPTION_REPLY_MAGIC, h.getLong(), "option reply magic");
        int opt = h.getInt();
        int type = h.getInt();
        int len = h.getInt();
        return new OptionReply(opt, type, read(len).array());
    }

    /** Replies up to and including the final one (ACK or an error). */
    List<OptionReply> readOptionReplies() throws IOException {
        List<OptionReply> out = new ArrayList<>();
        while (true) {
            OptionReply r = readOptionReply();
            out.add(r);
            if (r.type() == REP_ACK || r.type() < 0) return out;
        }
    }

    static byte[] infoRequest(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length);
        b.putInt(n.length).put(n).putShort((short) infos.length);
        for (int i : infos) b.putShort((short) i);
        return b.array();
    }

    static byte[] metaRequest(String name, String... queries) {
        ByteBuffer b = ByteBuffer.allocate(8192);
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        b.putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            b.putInt(qb.length).put(qb);
        }
        byte[] out = new byte[b.position()];
        b.flip().get(out);
        return out;
    }

    /** Full fixed-newstyle handshake ending with NBD_OPT_GO; asserts success. */
    static NbdTestClient open(Path socket, String export, boolean structured) throws IOException {
        NbdTestClient c = connect(socket);
        c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        if (structured) {
            c.sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
            assertEquals(REP_ACK, c.readOptionReply().type());
            c.structured = true;
        }
        c.go(export);
        return c;
    }

    void go(String export) throws IOException {
        sendOption(OPT_GO, infoRequest(export));
        for (OptionReply r : readOptionReplies()) {
            assertTrue(r.type() == REP_INFO || r.type() == REP_ACK, "GO failed with reply type " + r.type());
            if (r.type() == REP_INFO && r.buf().getShort() == INFO_EXPORT) {
                ByteBuffer b = r.buf();
                b.getShort();
                exportSize = b.getLong();
                transmissionFlags = b.getShort() & 0xffff;
            }
        }
    }

    void request(int flags, int type, long cookie, long offset, long length, byte[] payload) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(28 + (payload == null ? 0 : payload.length));
        b.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(cookie).putLong(offset)
                .putInt((int) length);
        if (payload != null) b.put(payload);
        write(b.flip());
    }

    /**
     * Reads one reply. For simple replies the caller says how many data bytes
     * follow (the read length for a successful read, else 0).
     */
    Reply readReply(LongToIntFunction simpleDataLength) throws IOException {
        int magic = read(4).getInt();
        if (magic == SIMPLE_REPLY_MAGIC) {
            ByteBuffer h = read(12);
            int error = h.getInt();
            long cookie = h.getLong();
            byte[] data = error == 0 ? read(simpleDataLength.applyAsInt(cookie)).array() : new byte[0];
            return new Reply(false, 0, 0, cookie, error, data);
        }
        assertEquals(STRUCTURED_REPLY_MAGIC, magic, "reply magic");
        ByteBuffer h = read(16);
        int flags = h.getShort() & 0xffff;
        int type = h.getShort() & 0xffff;
        long cookie = h.getLong();
        int len = h.getInt();
        byte[] payload = read(len).array();
        int error = 0;
        if ((type & 0x8000) != 0) error = ByteBuffer.wrap(payload).getInt();
        return new Reply(true, flags, type, cookie, error, payload);
    }

    /** Sends a command and returns its (single) reply; data of a read in data(). */
    Reply call(int flags, int type, long offset, long length, byte[] payload) throws IOException {
        long cookie = System.nanoTime();
        request(flags, type, cookie, offset, length, payload);
        Reply r = readReply(c -> type == CMD_READ ? (int) length : 0);
        assertEquals(cookie, r.cookie(), "reply cookie");
        return r;
    }

    /** Data bytes of a successful read reply (strips the structured offset). */
    static byte[] readData(Reply r) {
        if (!r.isStructured()) return r.data();
        if (r.chunkType() == REPLY_TYPE_NONE) return new byte[0];
        assertEquals(REPLY_TYPE_OFFSET_DATA, r.chunkType());
        return java.util.Arrays.copyOfRange(r.data(), 8, r.data().length);
    }

    /** True if the server closed the connection (end of stream on the next read). */
    boolean serverClosed() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1);
        try {
            return ch.read(b) < 0;
        } catch (IOException e) {
            return true; // reset by peer counts as closed
        }
    }

    // In 1 MiB slices, so that the client's own temporary direct buffers stay small too
    // (a test measures the server's).
    ByteBuffer read(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            b.limit(Math.min(n, b.position() + (1 << 20)));
            if (ch.read(b) < 0) throw new EOFException("server closed after " + b.position() + " of " + n + " bytes");
            b.limit(n);
        }
        return b.flip();
    }

    void write(ByteBuffer b) throws IOException {
        int end = b.limit();
        while (b.position() < end) {
            b.limit(Math.min(end, b.position() + (1 << 20)));
            ch.write(b);
            b.limit(end);
        }
    }

    @Override
    public void close() throws IOException { ch.close(); }
}
