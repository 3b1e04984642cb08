# The health stream: the sensor itself (uptime, boots and the last reset's cause, free heap,
# the errors and faults the other streams reported, the outbox). It closes last, so it counts
# what the others counted in the same pass.
import gc

from sensor import hal
from sensor.streams import Base


class Stream(Base):
    ID = "health"

    def __init__(self, ctx):
        from sensor.catalogue import CAUSES

        self.app = ctx.app
        cause = ctx.app.cause
        self.code = len(CAUSES) - 1  # "other"
        for i in range(len(CAUSES)):
            if CAUSES[i].replace("-", "") == cause:
                self.code = i

    def close(self, start, length):
        # In the catalogue's order: uptime, boots, cause, heap, errors, faults, queue, dropped.
        a = self.app
        gc.collect()
        up = hal.ticks_diff(hal.ticks_ms(), a.boot_ms) // 1000
        u = a.uplink
        # The total ever dropped, not a delta: a health record shed by a full outbox then
        # loses nothing, the next one that arrives still tells the whole count.
        v = (up, a.boots, self.code, hal.mem_free(), a.errors, a.faults,
             u.depth if u is not None else 0, u.dropped if u is not None else 0)
        a.errors = 0
        return v
