# bluetooth: the central-role scanning our firmware uses, as MicroPython documents it.
# Advertising reports arrive as world events while a scan runs; the address and data reach
# the handler as memoryviews into one reused buffer, as on a board (copy them to keep them).
import _board as _b

FLAG_READ = 0x0002
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6

_ble = None
_addr = bytearray(6)
_data = bytearray(31)


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
        self._handler = handler

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        if not self._active:
            raise OSError(19)
        if duration_ms is None:
            if self._scanning:
                _b.req({"q": "scan", "stop": 1, "now": [_b.ms, _b.us]})
            return
        self._scanning = True
        _b.req({"q": "scan", "d": duration_ms, "i": interval_us, "w": window_us,
                "a": 1 if active else 0, "now": [_b.ms, _b.us]})

    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        pass


def _adv(ev):
    # ev: ("a", ms, us, addr_type, addr_hex, adv_type, rssi, data_hex)
    b = _ble
    if b is None or b._handler is None or not b._scanning:
        return
    a = bytes.fromhex(ev[4])
    d = bytes.fromhex(ev[7])
    _addr[:] = a
    n = len(d)
    _data[:n] = d
    b._handler(_IRQ_SCAN_RESULT, (ev[3], memoryview(_addr), ev[5], ev[6], memoryview(_data)[:n]))


def _done(ev):
    b = _ble
    if b is None or not b._scanning:
        return
    b._scanning = False
    if b._handler is not None:
        b._handler(_IRQ_SCAN_DONE, None)


_b.handlers["a"] = _adv
_b.handlers["d"] = _done
