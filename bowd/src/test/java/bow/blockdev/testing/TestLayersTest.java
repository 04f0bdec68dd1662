package bow.blockdev.testing;

import bow.blockdev.DeviceException;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.*;

/** The gate and fault layers do what the race and fault tests rely on. */
class TestLayersTest {
    static final Duration T = Duration.ofSeconds(10);

    @Test
    void gateHoldsOnlyTheMatchingRequestUntilReleased() throws Exception {
        MemoryBlockDevice mem = new MemoryBlockDevice(64 * 1024);
        GateDevice dev = new GateDevice(mem);
        GateDevice.Gate g = dev.arm(GateDevice.Op.WRITE, GateDevice.Match.overlapping(4096, 4096));
        GateDevice.Request held = GateDevice.start("held", () -> dev.write(4096, ByteBuffer.wrap(new byte[] {7}).limit(1)));
        assertTrue(g.awaitArrived(T));
        // Another write passes while the first is held, and the held one has not reached the device.
        dev.write(0, ByteBuffer.wrap(new byte[] {1}));
        byte[] b = new byte[1];
        mem.read(4096, ByteBuffer.wrap(b));
        assertEquals(0, b[0]);
        assertFalse(held.isDone());
        g.release();
        held.join(T);
        mem.read(4096, ByteBuffer.wrap(b));
        assertEquals(7, b[0]);
    }

    @Test
    void gateAfterPhaseHoldsACompletedRequest() throws Exception {
        MemoryBlockDevice mem = new MemoryBlockDevice(8192);
        GateDevice dev = new GateDevice(mem);
        GateDevice.Gate g = dev.arm(GateDevice.Op.FLUSH, GateDevice.Phase.AFTER, GateDevice.Match.any(), 1);
        GateDevice.Request r = GateDevice.start("flush", dev::flush);
        assertTrue(g.awaitArrived(T));
        assertFalse(r.isDone());
        g.release();
        r.join(T);
        dev.flush();   // the gate is spent
    }

    @Test
    void faultsFailTheNthAndRangesAndErrors() throws Exception {
        FaultDevice dev = new FaultDevice(new MemoryBlockDevice(8192));
        FaultDevice.Rule second = dev.failNth(FaultDevice.Op.FLUSH, 2);
        dev.flush();
        assertThrows(DeviceException.class, dev::flush);
        dev.flush();
        assertEquals(1, second.hits());
        dev.failRange(FaultDevice.Op.WRITE, 4096, 512);
        dev.write(0, ByteBuffer.allocate(4096));
        assertThrows(DeviceException.class, () -> dev.write(4000, ByteBuffer.allocate(512)));
        dev.throwNth(FaultDevice.Op.READ, 1, () -> new OutOfMemoryError("injected"));
        assertThrows(OutOfMemoryError.class, () -> dev.read(0, ByteBuffer.allocate(1)));
        dev.clear();
        dev.write(4096, ByteBuffer.allocate(512));
    }
}
