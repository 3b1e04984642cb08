# The ble stream: distinct phones nearby per window. Each advert's address is hashed with a
# per-window secret into a bitmap sketch inside the IRQ handler and dropped (sensor/presence.py);
# the window hands the gate the number of set bits (one address sets at most one), which it
# noises before turning it into an estimate. Fault 0: the scan stopped (restarted from step).
from micropython import const

from sensor import hal
from sensor.presence import Presence
from sensor.streams import Base

_OFF = const(0)


class Stream(Base):
    ID = "ble"

    def __init__(self, ctx):
        self.ctx = ctx
        floor = ctx.cfg["rssi_floor"]
        bits = 8192
        pol = ctx.policy
        if pol is not None:
            floor = pol.get("rssi_floor", floor)
            bits = pol.get("sketch_bits", bits)
        presence = Presence(ctx.rng, bits, floor)
        self.presence = presence
        self.duty = ctx.cfg["duty_pct"]
        self.n = 0

        def irq(event, data):
            if event == hal.BLE_SCAN_RESULT:
                addr_type, addr, _adv_type, rssi, adv = data
                presence.on_advert(addr_type, addr, rssi, adv)
            elif event == hal.BLE_SCAN_DONE:
                ctx.fault(_OFF, True)  # restarted from the loop

        self._irq = irq
        self._start()

    def _start(self):
        try:
            hal.ble_scan(self._irq, self.duty)
            self.ctx.fault(_OFF, False)
        except OSError as e:
            print("ble: scan failed errno=%d" % e.args[0])
            self.ctx.fault(_OFF, True)

    def step(self, now_ms):
        if self.ctx.fault(_OFF, None):
            self._start()

    def close(self, start, length):
        ok = not self.ctx.fault(_OFF, None)
        ones = self.presence.ones()  # the gate noises set bits, not the estimate
        self.n = self.presence.roll()
        return (ones,) if ok else None
