# The sensor's main loop. For now: read the BME280 once a minute and print it; the sensing
# pipeline (windows, people counting, privacy gate, uplink) grows from here.
from sensor import hal
from sensor.bme280 import BME280

PERIOD_MS = 60000


def _fmt_centi(v):
    s = "-" if v < 0 else ""
    v = abs(v)
    return "%s%d.%02d" % (s, v // 100, v % 100)


class App:
    def __init__(self):
        self.board = hal.Board()
        print("atsource: %s boot (%s)" % (self.board.name, hal.reset_cause()))
        self.i2c = self.board.i2c()
        self.env = None
        self.next_ms = hal.ticks_ms()

    def step(self):
        # One pass of the main loop; returns how long to sleep (ms) before the next one.
        try:
            if self.env is None:
                self.env = BME280(self.i2c)
            t, p, h = self.env.read()
            print("env t=%sC rh=%s%% p=%dPa" % (_fmt_centi(t), _fmt_centi(h), p))
        except OSError as e:
            self.env = None
            print("env error errno=%d" % (e.args[0] if e.args else -1))
        self.next_ms = hal.ticks_add(self.next_ms, PERIOD_MS)
        return max(0, hal.ticks_diff(self.next_ms, hal.ticks_ms()))


def setup():
    return App()


def run():
    # The main loop. An emulated board may drive setup()/step() itself (same behaviour), to
    # measure the live heap between steps.
    app = setup()
    while True:
        hal.idle(app.step())
