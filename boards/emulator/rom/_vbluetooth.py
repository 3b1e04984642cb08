# bluetooth: the central-role scanning our firmware uses, as MicroPython documents it.
# Advertising reports arrive as world events while a scan runs, in runs packed by the host
# (docs/emulator.md "Events on the wire"); the address and data reach the handler as read-only
# memoryviews, as on a board (copy them to keep them).
#
# Names here and in the other /rom modules are chosen from those the board layer already
# interned: every new identifier or short string literal is a qstr, and a different qstr pool
# at the heap baseline shifts what the firmware's own qstrs cost it (docs/emulator.md).
import _board as _b

FLAG_READ = 0x0002
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6

_ble = None
_handler = None  # the IRQ handler while a scan runs, else None: reports go to it
# The radio's receive buffer: the runner writes each run of reports into it just before the
# run is decoded (as a controller's DMA fills the host stack's buffer), so reports cost the
# firmware's heap no transient blob a conservative collector could keep alive. A bytes object
# (immutable to Python, like the port's C buffer) gives read-only memoryviews, as the port
# does. Allocated here, before the heap baseline; the runner learns where it is from id().
_data = bytes(4096)
_b._emu.adv_data(-id(_data))


class UUID:
    def __init__(self, value):
        self._v = value

    def __eq__(self, other):
        return isinstance(other, UUID) and self._v == other._v


class BLE:
    def __new__(cls):
        global _ble
        if _ble is None:
            _ble = object.__new__(cls)
            _ble._active = False
            _ble._handler = None
            _ble._scanning = False
            # The port's object holds an event ring and an event data buffer on the heap
            # (extmod/modbluetooth.c: MICROPY_PY_BLUETOOTH_RINGBUF_SIZE, 128 bytes, and
            # max(128 / 2, 128 - 64) bytes): the firmware pays for them as on a board.
            _ble._rb = bytearray(128)
            _ble._ev = bytearray(64)
        return _ble

    def __init__(self):
        pass

    def active(self, active=None):
        if active is None:
            return self._active
        self._active = bool(active)
        if not self._active and self._scanning:
            self.gap_scan(None)
        return self._active

    def config(self, *args, **kwargs):
        if args and args[0] == "mac":
            return (0, bytes.fromhex(_b.cfg["ble_mac"]))
        if args:
            raise ValueError("unknown config param")

    def irq(self, handler):
        global _handler
        self._handler = handler
        _handler = handler if self._scanning else None

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        global _handler
        if not self._active:
            raise OSError(19)
        if duration_ms is None:
            if self._scanning:
                _b.req({"q": "scan", "stop": 1, "now": [_b.ms, _b.us]})
            return
        self._scanning = True
        _handler = self._handler
        _b.req({"q": "scan", "d": duration_ms, "i": interval_us, "w": window_us,
                "a": 1 if active else 0, "now": [_b.ms, _b.us]})

    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        pass


def _adv(ev):
    # ev: ("a", ms, us, k): run k of reports, which the runner now writes into _data, each
    # (engine.py ADV_HEADER) ms u32, us u16, addr_type, adv_type, rssi (signed), data length,
    # then the 6 address bytes and the data. Each runs the handler at its own time with
    # (addr_type, addr, adv_type, rssi, adv_data), addr and adv_data read-only memoryviews, as
    # the ports hand them (extmod/modbluetooth.c, invoke_irq_handler: mp_obj_memoryview_init
    # with typecode 'B'). No call per report but the handler's: the fields are read in place
    # and the clock is moved here.
    end = _b._emu.adv_data(ev[3])
    b = _data
    mv = memoryview(b)
    i = 0
    while i < end:
        m = b[i] | b[i + 1] << 8 | b[i + 2] << 16 | b[i + 3] << 24
        u = b[i + 4] | b[i + 5] << 8
        d = (m - _b.ms) * 1000 + u - _b.us
        if d > 0:  # as _b.set_now(m, u)
            _b.ms = m
            _b.us = u
            _b.tus = (_b.tus + d) & _b.MASK
        n = b[i + 9]
        k = i + 16
        h = _handler
        if h is not None:
            rssi = b[i + 8]
            if rssi > 127:
                rssi -= 256
            _addr = mv[i + 10 : k]
            adv_data = mv[k : k + n]
            h(_IRQ_SCAN_RESULT, (b[i + 6], _addr, b[i + 7], rssi, adv_data))
        i = k + n


def _done(ev):
    global _handler
    b = _ble
    if b is None or not b._scanning:
        return
    b._scanning = False
    _handler = None
    if b._handler is not None:
        b._handler(_IRQ_SCAN_DONE, None)


_b.handlers["a"] = _adv
_b.handlers["d"] = _done
