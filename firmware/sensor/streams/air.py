# The air stream: particulate matter from a Plantower PMS5003 (sensor/pms5003.py, docs/
# sensors.md), duty-cycled: woken every every_s seconds, read after warmup_s of fan, asleep in
# between; per window the means of PM1, PM2.5 and PM10 and the maxima of PM2.5 and PM10 in
# 0.1 ug/m3. No raw frame leaves the driver. Not about people. Faults, in the catalogue's
# order: 0 no answer (a reading cycle got no frame), 1 corrupt frames (checksum) this window.
from micropython import const

from sensor import hal, pms5003
from sensor.streams import Base

_MISSING = const(0)
_FRAME = const(1)


class Stream(Base):
    ID = "air"

    def __init__(self, ctx):
        self.ctx = ctx
        c = ctx.cfg
        pm = pms5003.Pms5003(ctx.board.uart("pm", 9600, 100), ctx.board.output("pm_set", 1))
        self.pm = pm
        try:
            pm.setup()  # passive mode, asleep
        except OSError:
            ctx.fault(_MISSING, True)
            print("air: sensor fault (no answer)")
        self.cycle = pms5003.AirCycle(pm, every_ms=c["every_s"] * 1000,
                                      warmup_ms=c["warmup_s"] * 1000)
        self.win = pms5003.AirWindow()
        self.at = hal.ticks_ms()
        self.wait = 0
        self.err = 0  # missing and corrupt frames in the window last closed

    def due_ms(self, now_ms):
        return self.wait - hal.ticks_diff(now_ms, self.at)

    def step(self, now_ms):
        if hal.ticks_diff(now_ms, self.at) < self.wait:
            return
        missing = self.pm.missing
        r, self.wait = self.cycle.step(now_ms)
        self.at = now_ms
        ctx = self.ctx
        if r is not None:
            self.win.add(r)
            if ctx.fault(_MISSING, False):
                print("air: sensor back")
        elif self.pm.missing > missing and not ctx.fault(_MISSING, True):
            print("air: sensor fault (no answer)")
        if self.pm.checksum_errors:
            ctx.fault(_FRAME, True)

    def close(self, start, length):
        # In the catalogue's order: pm1, pm2.5, pm10 means, pm2.5, pm10 maxima, samples.
        pm = self.pm
        self.err = pm.faults
        self.ctx.error(self.err)
        self.ctx.fault(_FRAME, False)  # per window: raised again by the next corrupt frame
        pm.checksum_errors = 0
        pm.missing = 0
        w = self.win.close()
        if w is None:
            return None
        return (w["pm1_mean"], w["pm2_5_mean"], w["pm10_mean"], w["pm2_5_max"], w["pm10_max"],
                w["samples"])
