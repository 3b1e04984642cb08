# The noise stream: the A-weighted level of one short block every every_s seconds (sensor/
# i2smic.py, sensor/loudness.py: integer A-weighting, docs/sensors.md), and per window LAeq,
# LAmin, LAmax, L10 and L90 of the blocks in 0.01 dB(A). Only a block's level leaves the
# driver: no sample, spectrum or buffer outlives its block. A level, not about people: the
# gate releases it like env's values. Fault 0: no microphone, or its data is stuck.
from micropython import const

from sensor import i2smic, loudness
from sensor.streams import Periodic

_MISSING = const(0)


class Stream(Periodic):
    ID = "noise"

    def __init__(self, ctx):
        self.ctx = ctx
        self.mic = i2smic.Mic(ctx.board.i2s_mic)
        self.meter = loudness.LevelMeter(self.mic, sens_cdb=ctx.cfg["sens_cdb"])
        self.win = loudness.LevelWindow()
        self._every(ctx.cfg["every_s"] * 1000)
        self.bad = 0  # failed blocks in this window
        self.err = 0  # ... in the window last closed
        try:
            self.mic.probe()
        except OSError:
            ctx.fault(_MISSING, True)
            print("noise: microphone fault (no data)")
        self._wipe()

    def _wipe(self):
        # No sample outlives its block. Also for RAM: MicroPython's collector is conservative,
        # and audio samples look like heap addresses, so a buffer left full of them keeps
        # whatever garbage they happen to point at alive until the next block.
        b = self.mic.buf
        for i in range(len(b)):
            b[i] = 0

    def open(self, start, now):
        self._align()  # blocks mid-period on the wall clock, as env's samples

    def step(self, now_ms):
        if not self._due(now_ms):
            return
        level = self.meter.measure()  # about 290 ms, waiting for the I2S DMA
        self._wipe()
        if level is None:
            self.bad += 1
            if not self.ctx.fault(_MISSING, True):
                print("noise: microphone fault (no data)")
            return
        if self.ctx.fault(_MISSING, False):
            print("noise: microphone back")
        self.win.add(level)

    def close(self, start, length):
        # In the catalogue's order: laeq, lamin, lamax, l10, l90, samples (blocks measured).
        self.err = self.bad
        self.ctx.error(self.bad)
        self.bad = 0
        w = self.win.close()
        if w is None:
            return None
        return (w["laeq"], w["lamin"], w["lamax"], w["l10"], w["l90"], w["samples"])
