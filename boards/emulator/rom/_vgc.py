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
    # While the stepped entry drives the firmware, the live heap measured when the last step
    # returned: this engine collects only then, so a count taken inside a step would include
    # whatever the step and the board layer have thrown away so far (on a board, gc.collect()
    # just before would have freed it), and would differ with how the host's replies are cut.
    live = _b.live()
    if live >= 0:
        return live
    return max(0, _gc.mem_alloc() - _b._heap_base + _b._qcharge)


def mem_free():
    return max(0, _b.cfg["heap_total"] - mem_alloc())
