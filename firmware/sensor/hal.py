# The board layer: the one place firmware reaches hardware and time.
#
# Pins, buses and budgets come from /board.json (the board definition deployed with the
# firmware), so one firmware tree serves every board. On an emulated board the same calls
# reach emulated peripherals and a virtual clock.
import gc
import json
import os
import time

import machine

ticks_ms = time.ticks_ms
ticks_us = time.ticks_us
ticks_diff = time.ticks_diff
ticks_add = time.ticks_add
sleep_ms = time.sleep_ms
urandom = os.urandom
mem_free = gc.mem_free

IRQ_RISING = machine.Pin.IRQ_RISING
IRQ_BOTH = machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING
BLE_SCAN_RESULT = 5
BLE_SCAN_DONE = 6

# reset_cause() values differ by port; name them once here.
# (getattr: not every port defines every cause.)
_CAUSES = {
    machine.PWRON_RESET: "power",
    machine.WDT_RESET: "watchdog",
    getattr(machine, "HARD_RESET", -2): "reset",
    getattr(machine, "SOFT_RESET", -3): "reset",
    getattr(machine, "DEEPSLEEP_RESET", -4): "deepsleep",
}
_BOOTS = "/boots"
_ble = None
_radio_on = False
_can_lightsleep = False


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
        global _can_lightsleep
        _can_lightsleep = self.can_lightsleep

    def i2c(self):
        c = self.pins["i2c"]
        return machine.I2C(
            c["id"], scl=machine.Pin(c["scl"]), sda=machine.Pin(c["sda"]), freq=c["freq"]
        )

    def input(self, name, pull=None):
        if pull is None:
            return machine.Pin(self.pins[name], machine.Pin.IN)
        return machine.Pin(self.pins[name], machine.Pin.IN, pull)

    def watchdog(self, timeout_ms):
        """A hardware watchdog; returns (wdt, timeout actually used)."""
        # The RP2040's watchdog counts at most about 8.3 s.
        top = 8000 if self.port == "rp2" else 600000
        t = timeout_ms if timeout_ms < top else top
        return machine.WDT(timeout=t), t

    def led(self):
        return machine.Pin(self.pins["led"], machine.Pin.OUT, value=0)

    def i2s_mic(self, ibuf):
        """The I2S microphone's bus, started: RX, 32-bit slots, mono, 16 kHz (docs/sensors.md)."""
        c = self.pins["mic"]
        return machine.I2S(
            c["id"], sck=machine.Pin(c["sck"]), ws=machine.Pin(c["ws"]),
            sd=machine.Pin(c["sd"]), mode=machine.I2S.RX, bits=32, format=machine.I2S.MONO,
            rate=16000, ibuf=ibuf,
        )

    def uart(self, name, baudrate, timeout_ms):
        """The UART wired to ``name`` (e.g. "pm": the particulate sensor), 8N1."""
        c = self.pins[name]
        return machine.UART(
            c["id"], baudrate=baudrate, tx=machine.Pin(c["tx"]), rx=machine.Pin(c["rx"]),
            bits=8, parity=None, stop=1, timeout=timeout_ms,
        )

    def output(self, name, value):
        """An output pin named in the board definition, driven to ``value``."""
        return machine.Pin(self.pins[name], machine.Pin.OUT, value=value)


# Records and windows carry Unix time on every port. The ports count time() from different
# epochs: esp32 from 2000-01-01 (MicroPython's default), rp2 from 1970-01-01
# (MICROPY_EPOCH_IS_1970). gmtime(0) tells which; nothing here assumes it.
_UNIX_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


def epoch():
    # Unix seconds from the RTC (valid once set by NTP).
    return time.time() + _UNIX_OFFSET


def epoch_ms():
    # Unix milliseconds, to wake right at a window boundary rather than up to 1 s late.
    return time.time_ns() // 1000000 + _UNIX_OFFSET * 1000


def gmtime(t):
    # The calendar of a Unix time, whatever the port's epoch.
    return time.gmtime(t - _UNIX_OFFSET)


def clock_valid():
    # After a power loss the RTC starts at 2000-01-01 (esp32) or 2021-01-01 (rp2); anything
    # before 2024 has not been set.
    return epoch() > 1704067200


def idle(ms):
    # Sleep between work. With no radio scanning, light sleep where the board has it (RAM and
    # pin IRQs kept); otherwise an idle sleep that keeps the BLE stack serving its IRQs.
    if ms <= 0:
        return
    if not _radio_on and ms >= 1000 and _can_lightsleep:
        machine.lightsleep(ms)
    else:
        time.sleep_ms(ms)


def reset_cause():
    c = machine.reset_cause()
    return _CAUSES.get(c, "reset %d" % c)


def count_boot():
    """Boots since provisioning (kept in /boots); one small write per boot."""
    n = 0
    try:
        with open(_BOOTS) as f:
            n = int(f.read())
    except (OSError, ValueError):
        pass
    n += 1
    try:
        with open(_BOOTS, "w") as f:
            f.write(str(n))
    except OSError:
        pass  # a full flash must not stop the boot
    return n


def ble_scan(handler, duty_pct):
    """Scan continuously with the given duty cycle; handler(event, data) gets the IRQs."""
    global _ble, _radio_on
    import bluetooth

    if _ble is None:
        _ble = bluetooth.BLE()
    _ble.active(True)
    _ble.irq(handler)
    interval = 100000  # us
    _ble.gap_scan(0, interval, interval * duty_pct // 100)
    _radio_on = True


class Net:
    # Wi-Fi station and the clock: joins the configured network and sets the RTC by NTP.
    def __init__(self, wifi):
        self.wifi = wifi
        self.wlan = None

    def up(self):
        if self.wifi is None:
            return False
        import network

        if self.wlan is None:
            self.wlan = network.WLAN(network.STA_IF)
            self.wlan.active(True)
        if self.wlan.isconnected():
            return True
        if self.wlan.status() != network.STAT_CONNECTING:
            self.wlan.connect(self.wifi["ssid"], self.wifi.get("key", ""))
        for _ in range(50):  # association and DHCP take a few seconds
            time.sleep_ms(100)
            if self.wlan.isconnected():
                return True
        return False

    def sync_time(self):
        if not self.up():
            return False
        import ntptime

        try:
            ntptime.settime()
            return True
        except (OSError, OverflowError):
            return False
