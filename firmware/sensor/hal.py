# The board layer: the one place firmware reaches hardware and time.
#
# Pins, buses and budgets come from /board.json (the board definition deployed with the
# firmware), so one firmware tree serves every board. On an emulated board the same calls
# reach emulated peripherals and a virtual clock.
import json
import time

import machine

ticks_ms = time.ticks_ms
ticks_diff = time.ticks_diff
ticks_add = time.ticks_add
sleep_ms = time.sleep_ms

# reset_cause() values differ by port; name them once here.
_CAUSES = {
    machine.PWRON_RESET: "power",
    machine.WDT_RESET: "watchdog",
}


class Board:
    def __init__(self, path="/board.json"):
        with open(path) as f:
            d = json.load(f)
        self.name = d["name"]
        self.port = d["port"]
        self.pins = d["pins"]
        self.radios = d["radios"]
        self.ram_budget = d["ram_budget"]
        self.can_lightsleep = d.get("lightsleep", False)

    def i2c(self):
        c = self.pins["i2c"]
        return machine.I2C(
            c["id"], scl=machine.Pin(c["scl"]), sda=machine.Pin(c["sda"]), freq=c["freq"]
        )

    def input(self, name, pull=None):
        if pull is None:
            return machine.Pin(self.pins[name], machine.Pin.IN)
        return machine.Pin(self.pins[name], machine.Pin.IN, pull)

    def led(self):
        return machine.Pin(self.pins["led"], machine.Pin.OUT, value=0)


def epoch():
    # Seconds since 1970 from the RTC (valid once set by NTP; 2000-01-01 after power-on).
    return time.time()


def clock_valid():
    # The RTC starts at 2000-01-01 after a power loss; anything before 2024 is unset.
    return time.time() > 1704067200


def idle(ms):
    # Sleep between work. Light sleep keeps RAM and pin IRQs; on an emulated board time
    # advances straight to the next event.
    if ms > 0:
        time.sleep_ms(ms)


def reset_cause():
    c = machine.reset_cause()
    return _CAUSES.get(c, "reset %d" % c)


def unique_id():
    return machine.unique_id()


def watchdog(timeout_ms):
    return machine.WDT(timeout=timeout_ms)
