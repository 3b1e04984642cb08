# micropython, as on the boards: every name of the VM's own module, plus what the esp32 and rp2
# builds have and the WebAssembly build leaves out. (_board names it `micropython`.)
import micropython as _m

for _k in dir(_m):
    if not _k.startswith("__"):
        globals()[_k] = getattr(_m, _k)


def alloc_emergency_exception_buf(size):
    pass


def mem_info(verbose=None):
    import gc

    print("stack: 0 out of 15360")
    print("GC: total: %d, used: %d, free: %d" % (
        gc.mem_alloc() + gc.mem_free(), gc.mem_alloc(), gc.mem_free()))


del _k


def kbd_intr(chr):
    # The serial port's interrupt character (3, or -1 to pass Ctrl-C through as data, as
    # mpremote mount does): it is the host that sees the port's bytes first.
    import _board

    _m.kbd_intr(chr)
    _board.req({"q": "kbd", "c": chr, "now": [_board.ms, _board.us]})
