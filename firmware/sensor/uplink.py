# The uplink: record -> pad -> seal (one counter value) -> outbox -> transport (docs/uplink.md).
#
# submit() stores a sealed record durably before it returns; pump() delivers the outbox in
# order until the transport fails, the outbox is empty or the time budget is spent. A frame
# leaves the outbox only after the transport confirmed it.
from micropython import const

from sensor import counter, outbox, sealer

_ENOSPC = const(28)


class Uplink:
    def __init__(self, identity, config, transport=None, root="", clock=None, fresh=False):
        # root prefixes the flash paths (tests under CPython use a temporary directory).
        self.counter = counter.Counter(
            root + "/counter", config.get("counter_reserve", 64), fresh
        )
        self.outbox = outbox.Outbox(root + "/outbox.log", config.get("outbox_frames", 2000))
        self.sealer = sealer.Sealer(identity.kid, identity.key, identity.iv, self.counter)
        if transport is None:
            from sensor import transport as tr

            transport = tr.make(config, "atsource-" + identity.kid.hex(), clock)
        self.transport = transport
        if clock is None:
            from sensor import hal

            clock = hal
        self._clock = clock
        self.sent = 0  # frames confirmed by the transport since boot

    @property
    def depth(self):
        return self.outbox.depth

    @property
    def dropped(self):
        """Records lost in the device's life (persisted, monotonic): health record key 27."""
        return self.outbox.dropped

    def submit(self, record):
        """Pad, seal and store one encoded CBOR record. True once it is durable in the
        outbox; False if it was lost (flash full or failing; counted as dropped)."""
        plaintext = sealer.pad(record)
        for _ in range(2):
            try:
                frame = self.sealer.seal(plaintext)
                return self.outbox.append(frame)
            except OSError as e:
                # The counter could not reserve (flash full): give the outbox's oldest frames
                # up once and try again; otherwise this record is lost, and counted.
                if e.args and e.args[0] == _ENOSPC and self.outbox.shed():
                    continue
                break
        self.outbox.lost()
        return False

    def pump(self, budget_ms=5000):
        """Deliver waiting frames in order; returns how many the transport confirmed."""
        c = self._clock
        t0 = c.ticks_ms()
        n = 0
        try:
            while self.outbox.depth and c.ticks_diff(c.ticks_ms(), t0) < budget_ms:
                frame = self.outbox.peek()
                if frame is None or not self.transport.send(frame):
                    break
                # The head record is written once per pump, not per frame: a power cut in
                # between sends a frame twice (the receiver drops the replay), never loses one.
                self.outbox.confirm(False)
                n += 1
        finally:
            self.outbox.sync()
        if not n:
            self.transport.poll()
        self.sent += n
        return n

    def close(self):
        self.outbox.sync()
        self.transport.close()
