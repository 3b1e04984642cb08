# os as on the board: the VM's os, with urandom from the board's generator (seedable in
# emulation, so a run is reproducible) and uname naming the board.
import os as _os

import _board as _b

for _k in dir(_os):
    if not _k.startswith("__"):
        globals()[_k] = getattr(_os, _k)
del _k

_uname = None


def urandom(n):
    if n < 0:
        raise ValueError  # extmod/modos.c mp_os_urandom
    return bytes(_b.rng_bytes(n))


def uname():
    global _uname
    if _uname is None:
        from collections import namedtuple

        c = _b.cfg
        t = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
        _uname = t(c["port"], c["port"], c["release"], c["version"], c["machine"])
    return _uname
