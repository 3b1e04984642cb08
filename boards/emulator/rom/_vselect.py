# select as on a board (extmod/modselect.c): poll objects and select(), for the serial port's
# stdin and the bridged sockets, asked of the host in one request so a wait follows the
# virtual clock; any other stream is polled with the VM's own select.
import select as _sel
import sys as _sys

import _board as _b
import _emu

POLLIN = 1
POLLOUT = 4
POLLERR = 8
POLLHUP = 16


def _io_id(obj):
    # The serial port's stdin (sys.stdin and its buffer) and the bridged sockets are the host's.
    if obj is _sys.stdin or obj is _sys.stdin.buffer:
        return "in"
    return getattr(obj, "_io_id", None)


def _ours(obj):
    return _io_id(obj) is not None


class _Poll:
    def __init__(self):
        self._reg = {}  # id(obj) -> [obj, mask]

    def register(self, obj, mask=POLLIN | POLLOUT):
        self._reg[id(obj)] = [obj, mask]

    def modify(self, obj, mask):
        e = self._reg.get(id(obj))
        if e is None:
            raise OSError(2)  # ENOENT, as modselect.c raises
        e[1] = mask

    def unregister(self, obj):
        self._reg.pop(id(obj), None)

    def poll(self, timeout=-1):
        return list(self.ipoll(timeout))

    def ipoll(self, timeout=-1, flags=0):
        ours = [e for e in self._reg.values() if _ours(e[0])]
        other = [e for e in self._reg.values() if not _ours(e[0])]
        ready = []
        if other:
            p = _sel.poll()
            for obj, mask in other:
                p.register(obj, mask)
            ready = p.poll(0 if ours else timeout)
        if ours and not ready:
            for obj, mask in ours:
                if mask & POLLIN and _io_id(obj) == "in" and _emu.stdin_pending():
                    ready = [(obj, POLLIN)]
        if ours and not ready:
            ids = [[_io_id(e[0]), e[1]] for e in ours]
            got = _b.io({"q": "io", "op": "poll", "f": ids, "t": timeout, "now": [_b.ms, _b.us]})
            by_id = {_io_id(e[0]): e[0] for e in ours}
            ready = [(by_id[i], ev) for i, ev in got]
        for r in ready:
            if flags & 1:  # one-shot: stop polling for this object until modify()
                self._reg[id(r[0])][1] = 0
            yield r


def poll():
    return _Poll()


def select(rlist, wlist, xlist, timeout=None):
    p = _Poll()
    for o in rlist:
        p.register(o, POLLIN)
    for o in wlist:
        e = p._reg.get(id(o))
        if e is None:
            p.register(o, POLLOUT)
        else:
            e[1] |= POLLOUT
    t = -1 if timeout is None else int(timeout * 1000)
    r, w = [], []
    for obj, ev in p.poll(t):
        if ev & (POLLIN | POLLERR | POLLHUP) and obj in rlist:
            r.append(obj)
        if ev & POLLOUT and obj in wlist:
            w.append(obj)
    return r, w, []
