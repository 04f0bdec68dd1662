package bow.control;

import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageLite;
import com.google.protobuf.Parser;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * Length-delimited protobuf messages (varint length, then the bytes), as
 * writeDelimitedTo writes them, with the length checked against a cap before
 * anything is allocated.
 */
public final class Framing {
    public static final int MAX_MESSAGE = 1 << 20;

    private Framing() {}

    /** Reads one message; null at a clean end of stream (before any byte of a message). */
    public static <T> T read(InputStream in, Parser<T> parser) throws IOException {
        int first = in.read();
        if (first < 0) return null;
        long len = 0;
        int shift = 0;
        int b = first;
        while (true) {
            len |= (long) (b & 0x7f) << shift;
            if ((b & 0x80) == 0) break;
            shift += 7;
            if (shift > 35) throw new InvalidProtocolBufferException("malformed length prefix");
            b = in.read();
            if (b < 0) throw new EOFException("stream ended inside a length prefix");
        }
        if (len > MAX_MESSAGE) {
            throw new InvalidProtocolBufferException("message of " + len + " bytes exceeds the limit of " + MAX_MESSAGE);
        }
        byte[] body = in.readNBytes((int) len);
        if (body.length != len) throw new EOFException("stream ended inside a message (" + body.length + " of " + len + " bytes)");
        return parser.parseFrom(body);
    }

    public static void write(OutputStream out, MessageLite msg) throws IOException {
        int size = msg.getSerializedSize();
        byte[] buf = new byte[CodedOutputStream.computeUInt32SizeNoTag(size) + size];
        CodedOutputStream cos = CodedOutputStream.newInstance(buf);
        cos.writeUInt32NoTag(size);
        msg.writeTo(cos);
        cos.checkNoSpaceLeft();
        out.write(buf);
        out.flush();
    }
}
