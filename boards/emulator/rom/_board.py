# The emulated board's core, inside the MicroPython VM: the virtual clock, requests to the host
# (the rest of the board and the world), and delivery of input events to IRQ handlers.
#
# It plays the part that C code and hardware play on a real board, so it lives outside the
# flash (/rom) and is loaded before boot.py. The modules a board has and the VM lacks
# (machine, bluetooth, network, ntptime, cryptolib) and the ones whose behaviour must follow
# the virtual clock (time, os.urandom, gc) are installed into sys.modules from here.
import gc
import json
import sys

import _emu
import micropython

# Virtual clock since boot: whole milliseconds, the microseconds within them, and ticks_us
# modulo 2**30 kept apart so that none of them grows into a heap-allocated big int.
ms = 0
us = 0
tus = 0
MASK = 0x3FFFFFFF
CALL_COST_US = 10  # what one board-layer call costs a real MCU, so busy-waits make progress

cfg = None
handlers = {}  # event kind -> function(event)
_heap_base = 0
_stepper = None
wdt_deadline = -1  # ms since boot, -1 when no watchdog runs
_q0 = None  # qstr_info() at the baseline: (pools, qstrs, string bytes, total bytes)
_qcharge = 0  # bytes of qstr pool a port would hold for the firmware's names, beyond the VM's
_qmods = -1  # len(sys.modules) at the last qstr count
_qn = 0  # heap samples since then


def advance(d_us):
    global ms, us, tus
    if d_us <= 0:
        return
    tus = (tus + d_us) & MASK
    us += d_us
    if us >= 1000:
        ms += us // 1000
        us %= 1000


def set_now(m, u):
    # The host's clock moved on (idle at the REPL); never go backwards.
    if m > ms or (m == ms and u > us):
        advance((m - ms) * 1000 + (u - us))


def cost():
    advance(CALL_COST_US)


def req(obj):
    # Every request carries the VM's clock and watchdog deadline (the runner may answer sleeps
    # itself: docs/emulator.md "The virtual clock").
    if "now" not in obj:
        obj["now"] = [ms, us]
    if wdt_deadline >= 0:
        obj["wd"] = wdt_deadline
    return json.loads(_emu.req(json.dumps(obj)))


def _deliver(events):
    for ev in events:
        set_now(ev[1], ev[2])
        h = handlers.get(ev[0])
        if h is not None:
            h(ev)


# The runner's functions this module calls most, looked up once: each lookup through the
# module's proxy makes a new proxy object on the heap.
_sleep = _emu.sleep
live = _emu.live


def sleep_until(tm, tu, kind="sleep"):
    # Hand the time to the host: it answers with the input events up to a point and the time
    # reached; events run their handlers at their own timestamps. A sleep that reaches its end
    # with nothing to deliver (most of an idle board's day) is answered 0 by the runner and
    # allocates nothing here: on a pico-w that is 23,000 watchdog wake-ups a day.
    while ms < tm or (ms == tm and us < tu):
        r = _sleep(kind, tm, tu, ms, us, wdt_deadline)
        if r == 0:
            set_now(tm, tu)
            continue
        r = json.loads(r)
        _deliver(r[2])
        set_now(r[0], r[1])


def sleep_us(n):
    if n <= 0:
        cost()
        return
    # ms * 1000 would pass 2**30, a big int (an allocation) on this VM as on a board
    t = us + n
    sleep_until(ms + t // 1000, t % 1000)


def sleep_ms(n):
    if n <= 0:
        cost()
        return
    sleep_until(ms + n, us)


def io(obj):
    # One I/O request that may wait on the outside world (the serial port's input, a real
    # socket on the host). The host answers [ms, us, events, result] as a sleep does, so IRQs
    # still run while the firmware waits; result is {"r": value} or {"e": errno}.
    r = req(obj)
    if r is None:
        raise OSError(5)  # EIO: the host does not serve this request
    _deliver(r[2])
    set_now(r[0], r[1])
    res = r[3]
    if "e" in res:
        raise OSError(res["e"])
    return res.get("r")


def tick(m, u):
    # Idle at the REPL: deliver what happened meanwhile.
    r = req({"q": "events", "ms": m, "us": u, "now": [ms, us]})
    _deliver(r[2])
    set_now(r[0], r[1])


def run_file(name, g):
    # pyexec_file: run boot.py / main.py in __main__'s globals (the REPL's, so what main.py
    # defined is still there after Ctrl-C), print a traceback like a board does.
    # Ctrl-C interrupts boot.py and main.py, as pyexec_file() arranges on a board (this VM
    # leaves the interrupt character unset outside its own REPL).
    micropython.kbd_intr(3)
    try:
        f = open(name)
    except OSError:
        return
    try:
        src = f.read()
    finally:
        f.close()
    try:
        exec(compile(src, name, "exec"), g)
    except SystemExit:
        _emu.soft_reset()
    except BaseException as e:  # noqa: B036 - a board prints every escaping exception
        sys.print_exception(e)
    finally:
        src = None


_last_nl = b""


def _input(prompt=None):
    # input() reads the serial port with echo and line editing, as a board's readline does
    # (shared/readline/readline.c): CR or LF ends a line, CR LF (or LF CR) is one newline.
    # (This VM's own input() would spin: in a browser nothing types.)
    global _last_nl
    out = sys.stdout.buffer
    if prompt:
        sys.stdout.write(prompt)
    line = bytearray()
    while True:
        c = sys.stdin.buffer.read(1)
        if not c:
            raise EOFError
        if c in (b"\r", b"\n"):
            if not _last_nl or _last_nl == c:
                _last_nl = c
                out.write(b"\r\n")
                return line.decode()
            _last_nl = b""
            continue
        _last_nl = b""
        if c in (b"\x08", b"\x7f"):
            if line:
                line.pop()
                out.write(b"\x08 \x08")
            continue
        if c == b"\x04" and not line:
            raise EOFError
        line += c
        out.write(c)


def at_repl():
    req({"q": "repl", "now": [ms, us]})


def setup(cfg_json):
    global cfg, ms, us, tus
    cfg = json.loads(cfg_json)
    m, u = cfg["now"]
    ms, us, tus = m, u, (m * 1000 + u) & MASK
    # Load the board's modules while /rom is still reachable, then put the flash at the root
    # of the file system, as on a board; the rest of the VM's file system (/dev, /tmp, /rom...)
    # stays out of sight.
    # `micropython` stays the VM's own module: it is the board's (help() and repr() show it
    # as a board does); the host learns its interrupt character from the runner.
    for name in ("time", "os", "gc", "machine", "bluetooth", "network",
                 "ntptime", "cryptolib", "random", "hostlink", "select", "socket", "ssl"):
        mod = __import__("_v" + name)
        # A shim must not show through: it names itself as the board's module and has no
        # __file__, so repr() and help() print what a board prints (py/objmodule.c).
        mod.__name__ = name
        try:
            del mod.__file__
        except (AttributeError, KeyError):
            pass
        sys.modules[name] = mod
        # `import utime` finds a board's built-in `time` through the u-prefix fallback
        # (py/builtinimport.c); here it must find the shim, not the VM's own module.
        sys.modules["u" + name] = mod
    sys.modules["time"].set_epoch(cfg["epoch"])
    import builtins

    builtins.input = _input
    import os

    import _vfs

    os.umount("/")
    os.mount(_vfs.Flash("/flash", cfg["fs_size"], cfg["fs_block"]), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    cfg["rng"] = bytes.fromhex(cfg["rng"])
    sys.modules["time"].set_rtc(cfg["rtc_us"])
    global _q0
    _q0 = _qstr_info()
    gc.collect()  # at the top level, once this call returns: baseline() then measures


def baseline():
    # What the board layer itself holds; the firmware's budget is counted above it. Called
    # from the top level, right after a collection there.
    global _heap_base
    _heap_base = gc.mem_alloc()
    req({"q": "ready", "heap_base": _heap_base})
    return _heap_base


# The qstr pools. Every name the firmware interns (identifiers and short strings of each .mpy
# it imports) goes into a pool on the heap, never freed (py/qstr.c, qstr_add): the first pool
# after the firmware's built-in (ROM) ones holds 20 entries and each next one twice the last.
# A port's board layer is C with ROM names, so on a board the firmware's names fill those pools
# from the first; here the board layer's own ~500 names (counted in the baseline) fill the first
# five, and the firmware would get them free. So the firmware is charged the pools a port
# would allocate for its names, less the ones this VM allocated for them after the baseline.
# An entry is a string pointer, its length byte and its hash: 2 bytes of hash on esp32
# (MICROPY_QSTR_BYTES_IN_HASH defaults to 2 at its ROM level, py/mpconfig.h), 1 on rp2
# (ports/rp2/mpconfigport.h). docs/emulator.md, "Heap and the RAM budget".
def _qstr_info():
    _emu.capture(1)
    try:
        micropython.qstr_info()
    finally:
        text = _emu.capture(0)
    # "qstr pool: n_pool=5, n_qstr=501, n_str_data_bytes=3688, n_total_bytes=8184"
    return [int(part.split("=")[1]) for part in text.strip().split(", ")]


def _port_pools(n):
    entry = 7 if cfg["port"] == "esp32" else 6
    size = total = 0
    cap = 10
    while total < n:
        cap *= 2
        total += cap
        size += (24 + entry * cap + 15) // 16 * 16  # a pool is one heap allocation
    return size


def _qstr_charge():
    q = _qstr_info()
    vm_pools = (q[3] - q[2]) - (_q0[3] - _q0[2])
    return _port_pools(q[1] - _q0[1]) - vm_pools


# This engine only collects garbage when control returns to the top level (JS), never inside
# a running program. The stepped entry gives it that chance after every step of the firmware.
def step_setup(entry):
    global _stepper
    micropython.kbd_intr(3)  # as run_file
    try:
        mod = __import__(entry, None, None, ("setup",))
        _stepper = mod.setup()
        _count_qstrs()
        gc.collect()
        return True
    except BaseException as e:  # noqa: B036 - as an escaping exception in main.py
        sys.print_exception(e)
        return False


def step():
    # The runner counts the live heap after each step returns, and collects first (collect())
    # only when the count could be a new peak (runner.mjs heapSample).
    try:
        sleep_ms(_stepper.step())
        _count_qstrs()
        return True
    except BaseException as e:  # noqa: B036
        sys.print_exception(e)
        return False


def collect():
    gc.collect()  # runs at the top level, as soon as this call returns


def _count_qstrs():
    # The firmware interns names when it imports (and rarely otherwise): count again after
    # an import, and every 64th step. Before the step's collection, so that what counting
    # allocates is not measured.
    global _qcharge, _qmods, _qn
    _qn += 1
    if len(sys.modules) != _qmods or _qn >= 64:
        _qmods = len(sys.modules)
        _qn = 0
        _qcharge = _qstr_charge()
        _emu.qcharge(_qcharge)


# The board's random generator: SHA-256 in counter mode from a seed the host gives at boot
# (drawn from the host's CSPRNG unless the run is seeded), so emulated runs are reproducible.
_rng_ctr = 0
_rng_buf = b""


def rng_bytes(n):
    global _rng_ctr, _rng_buf
    import hashlib

    out = bytearray()
    while len(out) < n:
        if not _rng_buf:
            h = hashlib.sha256(cfg["rng"])
            h.update(_rng_ctr.to_bytes(4, "big"))
            _rng_buf = h.digest()
            _rng_ctr += 1
        k = min(n - len(out), len(_rng_buf))
        out += _rng_buf[:k]
        _rng_buf = _rng_buf[k:]
    return out
