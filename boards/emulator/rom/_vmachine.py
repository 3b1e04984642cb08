# machine, as MicroPython documents it, for the board named in the boot configuration.
# Inputs (pin edges, I2C devices) come from the host's world; time from the virtual clock.
from array import array as _array

import _board as _b
import _vtime

_port = _b.cfg["port"]
_ESP32 = _port == "esp32"

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
# Errors an I2C NACK raises: ENODEV on esp32, EIO on rp2.
_I2C_NACK = 19 if _ESP32 else 5

if _ESP32:
    _VALID = set(range(0, 6)) | set(range(12, 20)) | {21, 22, 23, 25, 26, 27} | set(range(32, 40))
    _INPUT_ONLY = set(range(34, 40))
else:
    _VALID = set(range(0, 23)) | {26, 27, 28, "LED", "WL_GPIO0"}
    _INPUT_ONLY = set()

_levels = {}  # pin id -> level, kept current by the world's events
_irqs = {}  # pin id -> Pin with an armed handler


def _norm(pid):
    if isinstance(pid, Pin):
        return pid._id
    if isinstance(pid, str) and pid.startswith("GP") and not _ESP32:
        pid = int(pid[2:])
    if pid not in _VALID:
        raise ValueError("invalid pin")
    return pid


def _pin_event(ev):
    pid, level = ev[3], ev[4]
    old = _levels.get(pid, 1)
    _levels[pid] = level
    p = _irqs.get(pid)
    if p is None or old == level:
        return
    edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
    if p._trigger & edge and p._handler is not None:
        p._handler(p)


_b.handlers["p"] = _pin_event


class Pin:
    if _ESP32:
        IN = 1
        OUT = 3
        OPEN_DRAIN = 7
        PULL_UP = 2
        PULL_DOWN = 1
        IRQ_RISING = 1
        IRQ_FALLING = 2
        WAKE_LOW = 4
        WAKE_HIGH = 5
    else:
        IN = 0
        OUT = 1
        OPEN_DRAIN = 2
        ALT = 3
        PULL_UP = 1
        PULL_DOWN = 2
        IRQ_FALLING = 4
        IRQ_RISING = 8

    # One object per pin, made at boot: the ports keep a static table (ports/esp32/
    # machine_pin.c and ports/rp2/machine_pin.c, machine_pin_obj_table), so Pin(n) allocates
    # nothing on the heap and returns the same object every time, its IRQ handler kept.
    def __new__(cls, id, *args, **kw):
        return _pins[_norm(id)]

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None):
        if mode != -1:
            if mode in (Pin.OUT, Pin.OPEN_DRAIN) and self._id in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            self._mode = mode
        if value is not None:
            self._out = 1 if value else 0
        if self._mode == Pin.IN and self._id not in _levels:
            _levels[self._id] = _b.req({"q": "pin", "pin": self._id})

    def value(self, x=None):
        _b.cost()
        if x is None:
            if self._mode == Pin.IN:
                return _levels.get(self._id, 0)
            return self._out
        self._out = 1 if x else 0
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self._out = 1

    def off(self):
        self._out = 0

    def toggle(self):
        self._out ^= 1

    def irq(self, handler=None, trigger=None, *, hard=False, wake=None):
        if trigger is None:
            trigger = Pin.IRQ_FALLING | Pin.IRQ_RISING
        self._handler = handler
        self._trigger = trigger
        if handler is None:
            _irqs.pop(self._id, None)
        else:
            _irqs[self._id] = self
        return self

    def __repr__(self):
        return "Pin(%s)" % (self._id,)


def _static(cls, **attrs):
    # An object a port holds in static memory: made here, at boot, outside the firmware's
    # heap (the board layer's baseline), with every attribute it will have.
    o = object.__new__(cls)
    for k in attrs:
        setattr(o, k, attrs[k])
    return o


_pins = {}
for _p in _VALID:
    _pins[_p] = _static(Pin, _id=_p, _mode=Pin.IN, _handler=None, _trigger=0, _out=0)


class I2C:
    # Hardware buses are static objects on both ports (machine_hw_i2c_obj in ports/esp32/
    # machine_i2c.c, machine_i2c_obj in ports/rp2/machine_i2c.c).
    def __new__(cls, id=0, **kw):
        if id not in _i2c:
            raise ValueError("I2C(%s) doesn't exist" % (id,))
        return _i2c[id]

    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._bus = id
        self._freq = freq

    def init(self, *, scl=None, sda=None, freq=400000):
        self._freq = freq

    def _xfer(self, addr, w, n):
        r = _b.req({"q": "i2c", "b": self._bus, "a": addr, "w": bytes(w).hex(), "r": n,
                    "f": self._freq})
        _b.advance(r[2])
        if not r[0]:
            raise OSError(_I2C_NACK)
        return bytes.fromhex(r[1])

    def scan(self):
        return _b.req({"q": "i2cscan", "b": self._bus})

    def writeto(self, addr, buf, stop=True):
        self._xfer(addr, buf, 0)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        data = b"".join(bytes(v) for v in vector)
        self._xfer(addr, data, 0)
        return len(data)

    def readfrom(self, addr, nbytes, stop=True):
        return self._xfer(addr, b"", nbytes)

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self._xfer(addr, b"", len(buf))

    def _mem(self, memaddr, addrsize):
        return memaddr.to_bytes(addrsize // 8, "big")

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        return self._xfer(addr, self._mem(memaddr, addrsize), nbytes)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        buf[:] = self._xfer(addr, self._mem(memaddr, addrsize), len(buf))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._xfer(addr, self._mem(memaddr, addrsize) + bytes(buf), 0)


class SoftI2C(I2C):
    def __new__(cls, *args, **kw):
        return object.__new__(cls)  # a heap object on the ports (extmod/machine_i2c.c)

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        # A bit-banged bus on the I2C pins reaches the same devices.
        super().__init__(0, freq=freq)


_i2c = {0: _static(I2C, _bus=0, _freq=400000), 1: _static(I2C, _bus=1, _freq=400000)}


class ADC:
    ATTN_0DB = 0
    ATTN_11DB = 3

    def __init__(self, pin, *, atten=None):
        self._pin = pin._id if isinstance(pin, Pin) else pin

    def read_u16(self):
        return _b.req({"q": "adc", "pin": self._pin})

    def read_uv(self):
        return self.read_u16() * 3300000 // 65535


class RTC:
    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            t = _vtime._rtc_us()
            tm = _vtime.unix_gmtime(t // 1000000)
            return (tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], t % 1000000)
        secs = _vtime.unix_mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        _set_rtc(secs * 1000000 + (dt[7] if len(dt) > 7 else 0))

    def init(self, dt):
        self.datetime(dt)


def _set_rtc(epoch_us):
    _vtime.set_rtc(epoch_us)
    # The RTC keeps running across resets (not across a power cut): the host remembers it.
    _b.req({"q": "rtc", "us": epoch_us, "now": [_b.ms, _b.us]})


class WDT:
    # A static object on both ports (ports/esp32/machine_wdt.c wdt_default, ports/rp2/
    # machine_wdt.c machine_wdt).
    def __new__(cls, id=0, timeout=5000):
        return _wdt

    def __init__(self, id=0, timeout=5000):
        if not _ESP32 and timeout > 8388:
            raise ValueError("timeout too large")
        if timeout < 1:
            raise ValueError("timeout too small")
        self._timeout = timeout
        self.feed()
        # The host must know even if the firmware never sleeps again (a hung loop).
        _b.req({"q": "wdt", "w": _b.wdt_deadline, "now": [_b.ms, _b.us]})

    def feed(self):
        _b.wdt_deadline = _b.ms + self._timeout


_wdt = _static(WDT, _timeout=0)


def unique_id():
    return bytes.fromhex(_b.cfg["uid"])


def freq(hz=None):
    if hz is None:
        return _b.cfg["cpu_hz"]


def reset_cause():
    return _b.cfg["cause"]


def reset():
    _b.req({"q": "reset", "now": [_b.ms, _b.us]})


def soft_reset():
    raise SystemExit


def bootloader(value=None):
    _b.req({"q": "bootloader", "now": [_b.ms, _b.us]})


def idle():
    _b.sleep_us(1000)


def lightsleep(time_ms=None):
    _b.sleep_until(_b.ms + (time_ms if time_ms is not None else 3600000), _b.us, "lightsleep")


def deepsleep(time_ms=None):
    _b.req({"q": "deepsleep", "ms": time_ms, "now": [_b.ms, _b.us]})


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    return -2


# I2S, as docs/library/machine.I2S.rst and the ports (ports/esp32/machine_i2s.c,
# ports/rp2/machine_i2s.c, extmod/machine_i2s.c) define it: blocking readinto() fills the
# whole buffer, taking the buffer's duration of audio on the virtual clock. Samples come from
# the world's microphone on the bus (silence, all zeros, when none is wired). Mono: one
# little-endian sample per slot (the left channel).
class I2S:
    RX = 1 if _ESP32 else 0  # ESP-IDF I2S_DIR_RX / the rp2 port's enum
    TX = 2 if _ESP32 else 1
    MONO = 0
    STEREO = 1

    def __init__(self, id, **kw):
        if id not in (0, 1):
            raise ValueError("invalid id")
        self._id = id
        self._on = False
        self.init(**kw)

    def init(self, *, sck, ws, sd, mck=None, mode, bits, format, rate, ibuf):
        sck, ws, sd = _norm(sck), _norm(ws), _norm(sd)
        if not _ESP32 and ws != sck + 1:
            raise ValueError("invalid ws (must be sck+1)")
        if mode not in (I2S.RX, I2S.TX):
            raise ValueError("invalid mode")
        if bits not in (16, 32):
            raise ValueError("invalid bits")
        if format not in (I2S.MONO, I2S.STEREO):
            raise ValueError("invalid format")
        if ibuf <= 0:
            raise ValueError("invalid ibuf")
        self._sd = sd
        self._mode = mode
        self._bits = bits
        self._ch = 1 if format == I2S.MONO else 2
        self._rate = rate
        self._frames = 0
        self._on = True

    def deinit(self):
        self._on = False

    def readinto(self, buf):
        if not self._on or self._mode != I2S.RX:
            raise OSError(1)  # EPERM: not an initialised receiver
        mv = memoryview(buf)
        if not len(mv):
            return 0
        item = len(bytes(mv[:1]))  # the buffer's item size (a board sees only bytes)
        width = self._bits // 8 * self._ch
        frames = len(mv) * item // width
        if frames == 0:
            return 0
        # "f": frames clocked since init(): a microphone outputs nothing (zeros) until it
        # has started; the host sends those as a count, the rest as hex.
        r = _b.req({"q": "i2s", "id": self._id, "sd": self._sd, "n": frames, "rate": self._rate,
                    "bits": self._bits, "ch": self._ch, "f": self._frames,
                    "now": [_b.ms, _b.us]})
        self._frames += frames
        data = bytes(r[0] * width) + bytes.fromhex(r[1])
        if item == 1:
            mv[:] = data
        else:  # a typed buffer (array 'i' or 'h') takes an array of its own kind
            mv[: frames * width // item] = _array("i" if item == 4 else "h", data)
        t = _b.ms * 1000 + _b.us + frames * 1000000 // self._rate
        _b.sleep_until(t // 1000, t % 1000)
        return frames * width

    def irq(self, handler):
        raise OSError(95)  # EOPNOTSUPP here: the firmware reads blocking

    @staticmethod
    def shift(*, buf, bits, shift):
        raise OSError(95)


# UART, as docs/library/machine.UART.rst: bytes from the device on the world's side arrive
# on the virtual clock at the line rate (10 bits per byte at 8N1) into the receive buffer
# (rxbuf bytes; what overflows it is lost, as on a board); read()/readinto() wait on the
# virtual clock until the bytes asked for are there or ``timeout`` ms have passed. write()
# queues its bytes at once (the transmit FIFO) and the device sees them as they go out.
class UART:
    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kw):
        if id not in ((0, 1, 2) if _ESP32 else (0, 1)):
            raise ValueError("UART(%d) doesn't exist" % id)
        self._id = id
        self.init(baudrate, bits, parity, stop, **kw)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None,
             timeout=0, timeout_char=0, rxbuf=256, txbuf=256, **kw):
        self._timeout = timeout
        self._cfg = {"baud": baudrate, "bits": bits, "parity": parity, "stop": stop,
                     "rxbuf": rxbuf}
        self._rx = _norm(rx) if rx is not None else None
        if not _ESP32:
            # rp2 allocates the ring buffers on the heap (ports/rp2/machine_uart.c,
            # ringbuf_alloc of rxbuf + 1 and txbuf + 1); esp32 gives them to the IDF driver.
            self._rb = bytearray(rxbuf + 1)
            self._tb = bytearray(txbuf + 1)
        _b.req({"q": "uart", "id": self._id, "op": "init", "cfg": self._cfg,
                "now": [_b.ms, _b.us]})

    def deinit(self):
        _b.req({"q": "uart", "id": self._id, "op": "deinit", "now": [_b.ms, _b.us]})

    def _take(self, n):
        return _b.req({"q": "uart", "id": self._id, "op": "r", "n": n, "now": [_b.ms, _b.us]})

    def any(self):
        _b.cost()
        return self._take(0)["a"]

    def _read(self, n):
        out = b""
        t_end = _b.ms * 1000 + _b.us + self._timeout * 1000
        while True:
            r = self._take(n - len(out))
            out += bytes.fromhex(r["d"])
            if len(out) >= n:
                return out
            now = _b.ms * 1000 + _b.us
            t = r["t"]  # when the bytes still wanted will be in (or the last that will come)
            t = t_end if t is None or t > t_end else t
            if t <= now:
                return out
            _b.sleep_until(t // 1000, t % 1000)

    def read(self, nbytes=None):
        n = nbytes if nbytes is not None else max(1, self.any())
        out = self._read(n)
        return out if out else None

    def readinto(self, buf, nbytes=None):
        mv = memoryview(buf)
        n = len(mv) if nbytes is None else nbytes
        if n == 0:
            return 0
        out = self._read(n)
        if not out:
            return None
        mv[: len(out)] = out
        return len(out)

    def readline(self):
        out = b""
        while not out.endswith(b"\n"):
            c = self._read(1)
            if not c:
                break
            out += c
        return out if out else None

    def write(self, buf):
        data = bytes(buf)
        _b.req({"q": "uart", "id": self._id, "op": "w", "d": data.hex(),
                "now": [_b.ms, _b.us]})
        return len(data)

    def flush(self):
        _b.cost()

    def txdone(self):
        return True

    def sendbreak(self):
        pass
