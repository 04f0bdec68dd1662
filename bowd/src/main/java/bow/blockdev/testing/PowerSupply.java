package bow.blockdev.testing;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Random;

/**
 * Several {@link PowerCutDevice}s on one power supply (an origin and its COW): a cut, armed to
 * come after N mutating operations on any of them or at the start of the N-th flush of any of
 * them, kills all of them at once; {@link #reboot()} brings up new devices on their durable
 * images. Engines are opened on {@link #plug(int)}, which always routes to the current device,
 * so one engine object cannot outlive a cut unnoticed: every call after the cut fails with EIO.
 *
 * <p>Thread model: any number of threads. The count and the operation are one atomic step, so a
 * cut never falls between them (a write that was counted is in the cache when the power goes).
 */
public final class PowerSupply {
    private final PowerCutDevice[] devices;
    private long opsLeft = Long.MAX_VALUE, flushesLeft = Long.MAX_VALUE;
    private Random crashRandom = new Random(0);

    public PowerSupply(byte[]... images) {
        devices = new PowerCutDevice[images.length];
        for (int i = 0; i < images.length; i++) devices[i] = new PowerCutDevice(images[i]);
    }

    /** The cut comes at the start of the {@code n}-th mutating operation from now (0 = the next). */
    public synchronized void armOps(long n, Random r) { opsLeft = n; flushesLeft = Long.MAX_VALUE; crashRandom = r; }

    /** The cut comes at the start of the {@code n}-th flush from now (0 = the next). */
    public synchronized void armFlush(long n, Random r) { flushesLeft = n; opsLeft = Long.MAX_VALUE; crashRandom = r; }

    public synchronized void disarm() { opsLeft = Long.MAX_VALUE; flushesLeft = Long.MAX_VALUE; }

    public synchronized boolean dead() {
        for (PowerCutDevice d : devices) if (d.isDead()) return true;
        return false;
    }

    /** Cuts power now (a no-op when it is already off). */
    public synchronized void cutNow(Random r) {
        for (PowerCutDevice d : devices) d.crash(r);
    }

    /** New devices on the durable images, power on, nothing armed. */
    public synchronized void reboot() {
        for (int i = 0; i < devices.length; i++) devices[i] = new PowerCutDevice(devices[i].durableImage());
        disarm();
    }

    public synchronized byte[] durableImage(int i) { return devices[i].durableImage(); }

    public synchronized byte[] liveImage(int i) { return devices[i].liveImage(); }

    /** Device {@code i} as an engine sees it. */
    public BlockDevice plug(int i) { return new Plug(i); }

    private synchronized void tick(boolean flush) throws DeviceException {
        if (dead()) throw new DeviceException(Errno.EIO, "simulated power cut: device is gone");
        boolean cut = opsLeft != Long.MAX_VALUE && opsLeft-- <= 0;
        if (flush && flushesLeft != Long.MAX_VALUE && flushesLeft-- <= 0) cut = true;
        if (cut) {
            cutNow(crashRandom);
            throw new DeviceException(Errno.EIO, "simulated power cut (all devices)");
        }
    }

    private synchronized PowerCutDevice device(int i) { return devices[i]; }

    private final class Plug implements BlockDevice {
        private final int i;
        Plug(int i) { this.i = i; }
        @Override public long size() { return device(i).size(); }
        @Override public void read(long o, ByteBuffer b) throws IOException { device(i).read(o, b); }
        @Override public void write(long o, ByteBuffer b) throws IOException {
            synchronized (PowerSupply.this) { tick(false); devices[i].write(o, b); }
        }
        @Override public void discard(long o, long l) throws IOException {
            synchronized (PowerSupply.this) { tick(false); devices[i].discard(o, l); }
        }
        @Override public void flush() throws IOException {
            synchronized (PowerSupply.this) { tick(true); devices[i].flush(); }
        }
        @Override public String toString() { return "power-supply device " + i; }
    }
}
