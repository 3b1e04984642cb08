# gc with the board's numbers: what the firmware allocated on top of the board layer, against
# the board's heap size (the VM's own heap is split, grows, and is much larger).
import gc as _gc

import _board as _b

collect = _gc.collect
enable = _gc.enable
disable = _gc.disable
isenabled = _gc.isenabled


threshold = _gc.threshold  # py/modgc.c: -1 until set, then the threshold in bytes


def mem_alloc():
    return max(0, _gc.mem_alloc() - _b._heap_base)


def mem_free():
    return max(0, _b.cfg["heap_total"] - mem_alloc())
